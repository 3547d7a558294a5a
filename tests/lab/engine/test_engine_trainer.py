import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from dropkit_lab.data import load_digits
from dropkit_lab.engine import MLPConfig, Schedule, TrainConfig, mc_errors, train
from dropkit_lab.engine.specs import weights_digest

DATA = load_digits().subset(400, 200)
MODEL = MLPConfig(64, (48, 48), 10, method="dropout", input_p=0.2, hidden_p=0.5, init_std=0.1)
SCHEDULE = Schedule(lr=0.5, lr_decay=0.95, momentum_start=0.5, momentum_end=0.9, momentum_epochs=3)


def recipe(epochs=4, seed=3, **kw):
    return TrainConfig(
        epochs=epochs, schedule=SCHEDULE, batch_size=32, max_norm=2.0, seed=seed, **kw
    )


def strip(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_same_seed_same_weights_bit_for_bit_and_global_rng_untouched():
    state = torch.get_rng_state()
    a = train(MODEL, recipe(), DATA, progress="none")
    assert torch.equal(torch.get_rng_state(), state)
    b = train(MODEL, recipe(), DATA, progress="none")
    c = train(MODEL, recipe(seed=4), DATA, progress="none")
    assert weights_digest(a.model) == weights_digest(b.model)
    assert strip(a.history) == strip(b.history)
    assert weights_digest(a.model) != weights_digest(c.model)
    assert len(a.history) == 4 and a.n_test == 200
    assert a.test_errors == round(a.test_error * 200)


def test_learns_and_max_norm_holds():
    result = train(MODEL, recipe(epochs=8), DATA, progress="none")
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.test_error < 0.5  # chance is 0.9
    for w in result.model.hidden_weights():
        assert float(w.detach().norm(dim=1).max()) <= 2.0 + 1e-5


def test_stop_and_resume_equals_uninterrupted(tmp_path):
    full = train(MODEL, recipe(epochs=5), DATA, progress="none")
    ckpt = tmp_path / "run.pt"
    part = train(MODEL, recipe(epochs=5), DATA, checkpoint=ckpt, progress="none", stop_after=2)
    assert not part.finished and len(part.history) == 2 and ckpt.exists()
    resumed = train(MODEL, recipe(epochs=5), DATA, checkpoint=ckpt, progress="none")
    assert resumed.resumed_from == 2 and resumed.finished
    assert weights_digest(resumed.model) == weights_digest(full.model)
    assert strip(resumed.history) == strip(full.history)
    assert resumed.test_errors == full.test_errors
    assert not list(tmp_path.glob("*.tmp"))


def test_checkpoint_of_other_config_refused(tmp_path):
    ckpt = tmp_path / "run.pt"
    train(MODEL, recipe(epochs=1), DATA, checkpoint=ckpt, progress="none")
    with pytest.raises(ValueError, match="different configuration"):
        train(MODEL, recipe(epochs=1, seed=9), DATA, checkpoint=ckpt, progress="none")


def test_divergence_reported():
    cfg = TrainConfig(epochs=3, schedule=Schedule(lr=1e30, momentum_start=0.0), batch_size=50)
    with pytest.raises(FloatingPointError, match="diverged"):
        train(MLPConfig(64, (32,), 10), cfg, DATA, progress="none")


def test_plain_progress_prints_epochs(capsys):
    train(MODEL, recipe(epochs=2), DATA, progress="plain", desc="demo-run")
    err = capsys.readouterr().err
    assert "demo-run: epoch 1/2" in err and "demo-run: epoch 2/2" in err and "test err" in err


def test_mc_errors_without_noise_equal_deterministic_and_converge_with_noise():
    plain = train(MLPConfig(64, (48,), 10, init_std=0.1), recipe(epochs=3), DATA, progress="none")
    mc = mc_errors(plain.model, DATA.test_x, DATA.test_y, [1, 5], seed=0)
    assert mc == {1: plain.test_errors, 5: plain.test_errors}
    noisy = train(MODEL, recipe(epochs=6), DATA, progress="none")
    mc = mc_errors(noisy.model, DATA.test_x, DATA.test_y, [1, 50], seed=0)
    assert mc == mc_errors(noisy.model, DATA.test_x, DATA.test_y, [1, 50], seed=0)
    # One sampled net is worse than the average of 50, which is close to weight scaling.
    assert mc[1] > mc[50]
    assert abs(mc[50] - noisy.test_errors) <= max(6, 0.3 * noisy.test_errors)


SETUP = textwrap.dedent(
    """
    import torch
    from dropkit_lab.data import load_digits
    from dropkit_lab.engine import MLPConfig, Schedule, TrainConfig, train
    from dropkit_lab.engine.progress import Progress
    from dropkit_lab.engine.specs import weights_digest

    def setup(epochs):
        data = load_digits().subset(600, 200)
        model = MLPConfig(64, (256, 256), 10, method="dropout", input_p=0.2, hidden_p=0.5)
        sched = Schedule(lr=0.5, lr_decay=0.95, momentum_start=0.5, momentum_end=0.9,
                         momentum_epochs=3)
        cfg = TrainConfig(epochs=epochs, schedule=sched, batch_size=20, max_norm=2.0, seed=5)
        return model, cfg, data
    """
)
SCRIPT = SETUP + textwrap.dedent(
    """
    import sys

    class Say(Progress):
        def update(self, record):
            print("epoch", record["epoch"] + 1, flush=True)

    torch.set_num_threads(1)
    model, cfg, data = setup(int(sys.argv[2]))
    result = train(model, cfg, data, checkpoint=sys.argv[1], progress=Say())
    print("digest", weights_digest(result.model), result.resumed_from, flush=True)
    """
)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    epochs = "12"

    def finish(ckpt):
        out = subprocess.run(
            [sys.executable, str(script), str(ckpt), epochs],
            capture_output=True,
            text=True,
            env=env,
            timeout=240,
            check=True,
        ).stdout
        return out.splitlines()[-1].split()

    # The uninterrupted reference, in this process with the script's thread count.
    namespace: dict = {}
    exec(SETUP, namespace)
    torch.set_num_threads(1)
    reference = train(*namespace["setup"](int(epochs)), progress="none")
    ckpt = tmp_path / "killed.pt"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(ckpt), epochs], stdout=subprocess.PIPE, text=True, env=env
    )
    for line in proc.stdout:
        if line.startswith("epoch 3"):
            os.kill(proc.pid, signal.SIGKILL)  # while epoch 4 is being computed
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    resumed = finish(ckpt)
    assert 3 <= int(resumed[2]) < int(epochs)
    assert resumed[1] == weights_digest(reference.model)
