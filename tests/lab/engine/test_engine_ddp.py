import json
import os
import subprocess
import sys

import pytest

SPEC = {
    "dataset": "digits",
    "train_size": 320,
    "test_size": 100,
    "model": {
        "in_features": 64,
        "widths": [32, 32],
        "num_classes": 10,
        "method": "dropout",
        "input_p": 0.2,
        "hidden_p": 0.5,
        "init_std": 0.1,
    },
    "train": {
        "epochs": 3,
        "batch_size": 32,
        "max_norm": 2.0,
        "seed": 11,
        "schedule": {
            "lr": 0.5,
            "lr_decay": 0.95,
            "momentum_start": 0.5,
            "momentum_end": 0.9,
            "momentum_epochs": 2,
        },
    },
    "progress": False,
}


def launch(tmp_path, name, nproc):
    spec = dict(SPEC, result=str(tmp_path / f"{name}.json"))
    path = tmp_path / f"{name}.spec.json"
    path.write_text(json.dumps(spec))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "dropkit_lab.engine.launch",
        str(path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"{name}.json.rank{r}.json").read_text()) for r in range(nproc)]
    return json.loads((tmp_path / f"{name}.json").read_text()), ranks


@pytest.mark.slow
def test_two_ranks_gloo_distinct_masks_and_reproducible(tmp_path):
    first, ranks = launch(tmp_path, "a", 2)
    second, _ = launch(tmp_path, "b", 2)
    assert first["world_size"] == 2
    # Every rank ends with the same weights (gradients are all-reduced) ...
    assert ranks[0]["weights"] == ranks[1]["weights"] == first["weights"]
    # ... but draws its own masks.
    assert ranks[0]["mask_probe"] != ranks[1]["mask_probe"]
    # A fixed world size gives the same result bit for bit.
    assert second["weights"] == first["weights"]

    def strip(history):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in history]

    assert strip(second["history"]) == strip(first["history"])
    assert 0 <= first["test_error"] < 0.9
