"""FractalNet joins with local and global drop-path (Larsson et al. 2016)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dropkit import _state, rng
from dropkit import functional as F
from dropkit.nn._base import StochasticModule
from dropkit.ops import resolve_stream
from dropkit.ops.checks import (
    check_branches,
    check_index_list,
    check_int,
    check_module,
    check_probability,
)

__all__ = ["FractalDropPath", "JoinDrop"]


class FractalDropPath(StochasticModule):
    """The network-wide drop-path policy that a fractal network's joins share.

    Call :meth:`sample` once per training batch: with probability ``global_fraction`` (the paper:
    50%) the batch is *global* — one column, uniform over ``num_columns``, is kept at every join —
    otherwise *local* — every join drops its branches independently with probability ``p`` (the
    paper: 0.15). Set ``eval_column`` to evaluate a single column (e.g. the deepest) at test time.
    The two draws use stream words 0 and 1 of the call's seed: the batch is global iff word 0 is
    below ``round(global_fraction * 2**32)``, and its column is ``floor(u * num_columns)`` with
    ``u`` the uniform float of word 1. :meth:`attach` calls :meth:`sample` automatically before
    each forward of the network. Register the policy in the network (e.g. as an attribute) to keep
    its settings with the model; it holds no tensors. A global batch keeps one column for every
    sample, so Monte-Carlo replicas of a batch share it (unlike local drops, which are per sample).
    """

    def __init__(
        self,
        num_columns: int,
        p: float = 0.15,
        global_fraction: float = 0.5,
        eval_column: int | None = None,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(generator=generator, seed=seed)
        op = "FractalDropPath"
        self.num_columns = check_int(num_columns, "num_columns", op=op, minimum=1)
        self.p = check_probability(p, op=op)
        self.global_fraction = check_probability(
            global_fraction, "global_fraction", op=op, what="global_fraction"
        )
        if eval_column is not None and not (
            check_int(eval_column, "eval_column", op=op, minimum=0) < num_columns
        ):
            raise ValueError(
                f"{op}: eval_column must be in [0, {num_columns - 1}], got {eval_column!r}"
            )
        self.eval_column = eval_column
        self.mode = "local"
        self.column: int | None = None

    def sample(self) -> None:
        """Draw this batch's mode and (for a global batch) its column."""
        seed_t, offset = resolve_stream(self.generator, self.seed, 0, 2)
        words = rng.stream_words(2, int(seed_t), offset)
        is_global = int(words[0]) < rng.keep_threshold(self.global_fraction)
        self.mode = "global" if is_global else "local"
        self.column = int((int(words[1]) >> 8) * 2.0**-24 * self.num_columns) if is_global else None

    def attach(self, model: nn.Module) -> torch.utils.hooks.RemovableHandle:
        """Draw a fresh batch policy before every forward of ``model`` that samples (training, or
        inside :func:`dropkit.mc.stochastic`); returns the hook handle."""
        check_module(model, "model", op="FractalDropPath.attach")

        def hook(module: nn.Module, args) -> None:
            if _state.is_stochastic(module.training):
                self.sample()

        return model.register_forward_pre_hook(hook)

    def extra_repr(self) -> str:
        return (
            f"num_columns={self.num_columns}, p={self.p}, global_fraction={self.global_fraction}, "
            f"eval_column={self.eval_column}"
        )


class JoinDrop(nn.Module):
    """A FractalNet join: the mean of its branches with local/global drop-path.

    ``columns`` names the column each branch comes from (FractalNet joins merge the columns that
    reach that depth). Training (or Monte-Carlo inference) follows the shared ``policy``:

    - local batch: :func:`dropkit.functional.drop_branches` with the policy's ``p``, per sample,
      at least one branch kept, mean of the survivors;
    - global batch: the branch of the policy's column is returned; a join that column does not
      pass through returns the plain mean (in FractalNet such a join only feeds deeper columns,
      which are off the kept path, so its value does not reach the output).

    Evaluation: the mean of all branches, or, with ``policy.eval_column`` set, the branch of that
    column (the paper's single-column "deepest column" network; joins without it return the mean).
    """

    def __init__(self, policy: FractalDropPath, columns: Sequence[int]) -> None:
        super().__init__()
        if not isinstance(policy, FractalDropPath):
            raise TypeError(f"policy must be a FractalDropPath, got {type(policy).__name__}")
        columns = check_index_list(columns, "columns", op="JoinDrop", bound=policy.num_columns)
        object.__setattr__(self, "policy", policy)  # shared, not a child of every join
        self.columns = columns

    def forward(self, branches: Sequence[torch.Tensor]) -> torch.Tensor:
        check_branches(branches, "JoinDrop")
        if len(branches) != len(self.columns):
            raise ValueError(f"expected {len(self.columns)} branches, got {len(branches)}")
        policy = self.policy
        stochastic = _state.is_stochastic(self.training)
        if not stochastic:
            column = policy.eval_column
            position = self.columns.index(column) if column in self.columns else None
            return F.drop_branches(branches, training=False, column=position)
        if policy.mode == "global":
            if policy.column in self.columns:
                return branches[self.columns.index(policy.column)]
            return torch.stack(list(branches)).mean(0)
        return F.drop_branches(branches, policy.p, True, **policy._random_kwargs())

    def _get_name(self) -> str:
        return f"dropkit.{type(self).__name__}"

    def __prepare_scriptable__(self):
        return self.policy.__prepare_scriptable__()

    def extra_repr(self) -> str:
        return f"columns={self.columns}"
