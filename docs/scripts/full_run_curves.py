"""Extract the test-error curves of a ``hinton2012-mnist --profile full`` run for the docs.

    python docs/scripts/full_run_curves.py OUT_DIR > docs/data/hinton2012-full.json

``OUT_DIR`` is the ``--out`` folder of ``dropkit run``; the JSON holds, per configuration, the
``(epoch, test errors out of 10,000)`` points of its run file, the paper's values and the run's
epochs and training seconds. ``docs/scripts/make_figures.py`` draws the figure from it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dropkit_lab.experiments.hinton2012_mnist import GROUPS, PROFILES
from dropkit_lab.experiments.paper_values import HINTON_2012_MNIST_ERRORS


def curves(out: Path) -> dict:
    runs = out / "hinton2012-mnist" / "full" / "runs"
    found: dict = {"epochs": PROFILES["full"]["epochs"], "curves": {}, "final": {}, "seconds": {}}
    for path in sorted(runs.glob("*.json")):
        record = json.loads(path.read_text())
        group = record["spec"]["group"]
        found["curves"][group] = [
            [e["epoch"], round(1e4 * e["test_error"])]
            for e in record["history"]
            if e.get("test_error") is not None
        ]
        found["final"][group] = record["test_errors"]
        found["seconds"][group] = round(record["train_seconds"])
    found["curves"] = {g: found["curves"][g] for g in GROUPS if g in found["curves"]}
    found["paper"] = {g: HINTON_2012_MNIST_ERRORS[g]["value"] for g in found["curves"]}
    return found


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[0] + "\nusage: full_run_curves.py OUT_DIR")
    print(json.dumps(curves(Path(sys.argv[1])), indent=1))
