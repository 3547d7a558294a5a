"""Entry point for one (possibly data-parallel) training run described by a JSON file.

    torchrun --nproc_per_node=2 -m dropkit_lab.engine.launch spec.json

``spec.json`` holds ``model`` and ``train`` (the dict forms of :class:`MLPConfig` and
:class:`TrainConfig`), ``dataset`` (``digits``, ``mnist``, ``fashion-mnist``), optional
``data_dir``, ``train_size``, ``test_size``, ``checkpoint``, ``device`` and ``result`` (a path).
Under ``torchrun`` the process group is initialised with gloo on the CPU and nccl on CUDA. Every
rank writes ``<result>.rank<r>.json`` (its weights digest and a digest of the masks it draws);
rank 0 also writes ``result`` (test error, history, digest). Run without ``torchrun`` it trains
in one process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import torch

from dropkit_lab.data import load_dataset
from dropkit_lab.engine.jsonio import write_json_atomic
from dropkit_lab.engine.specs import model_config_from_dict, train_config_from_dict, weights_digest
from dropkit_lab.engine.trainer import mask_seed, train


def mask_probe(seed: int, rank: int) -> str:
    """Digest of the first dropout mask rank ``rank`` draws in epoch 0 (distinct per rank)."""
    import dropkit.functional as DF

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(mask_seed(seed, 0, rank))
        mask = DF.dropout(torch.ones(4096), 0.5, True) != 0
    return hashlib.sha256(mask.numpy().tobytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dropkit_lab.engine.launch")
    parser.add_argument("spec")
    args = parser.parse_args(argv)
    with open(args.spec) as f:
        spec = json.load(f)
    device = spec.get("device", "cpu")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        backend = "nccl" if device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend)
        rank = torch.distributed.get_rank()
        if device == "cuda":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(device)
    else:
        rank = 0
    try:
        data = load_dataset(spec["dataset"], spec.get("data_dir"))
        data = data.subset(spec.get("train_size"), spec.get("test_size"))
        model_config = model_config_from_dict(spec["model"])
        train_config = train_config_from_dict(spec["train"])
        result = train(
            model_config,
            train_config,
            data,
            checkpoint=spec.get("checkpoint"),
            progress="plain" if spec.get("progress", True) else "none",
            desc=spec.get("desc", "train"),
            device=device,
        )
        digest = weights_digest(result.model)
        out = spec["result"]
        world = torch.distributed.get_world_size() if distributed else 1
        write_json_atomic(
            f"{out}.rank{rank}.json",
            {
                "rank": rank,
                "world_size": world,
                "weights": digest,
                "mask_probe": mask_probe(train_config.seed, rank),
            },
        )
        if rank == 0:
            write_json_atomic(
                out,
                {
                    "test_error": result.test_error,
                    "test_errors": result.test_errors,
                    "history": result.history,
                    "weights": digest,
                    "world_size": world,
                },
            )
    finally:
        if distributed:
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
