"""The route choice of an op call: whether nothing traces, fakes or transforms it (then the
call skips the custom op's dispatch and its seed stays a Python int)."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

__all__ = ["plain_eager"]

_PLAIN = (torch.Tensor, torch.nn.Parameter)


def plain_eager(tensors) -> bool:
    """Whether nothing traces, fakes or transforms a call on ``tensors`` (then the op's dispatch
    is not needed)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    if torch._C._is_torch_function_mode_enabled() or _get_current_dispatch_mode() is not None:
        return False
    for t in tensors:
        if type(t) not in _PLAIN or t.is_meta or torch._C._functorch.is_functorch_wrapped_tensor(t):
            return False
    return True
