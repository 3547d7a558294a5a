"""The ensemble trainer: every member bit for bit what train() gives it alone, resumable."""

import pytest
import torch

from dropkit_lab.data import load_digits
from dropkit_lab.engine import MLPConfig, Schedule, TrainConfig, train
from dropkit_lab.engine.ensemble import Member, stack_key, train_ensemble

DATA = load_digits().subset(300, 150)  # 300 = 9 batches of 32 and one of 12
CONFIGS = [
    # (model keywords, recipe keywords): no dropout, hidden dropout, input + hidden (classic)
    ({"method": "none"}, {"max_norm": None, "lr": 0.3}),
    ({"method": "dropout", "hidden_p": 0.5}, {"max_norm": 0.6}),
    (
        {"method": "dropout", "input_p": 0.2, "hidden_p": 0.5, "mode": "classic"},
        {"max_norm": 0.6, "scale_step": False, "eval_every": 2},
    ),
]


def recipe(seed, epochs=3, lr=0.5, max_norm=None, **kw):
    schedule = Schedule(
        lr=lr, lr_decay=0.9, momentum_start=0.5, momentum_end=0.9, momentum_epochs=2
    )
    return TrainConfig(
        epochs=epochs, schedule=schedule, batch_size=32, max_norm=max_norm, seed=seed, **kw
    )


def members(epochs=3, seeds=(0, 1), checkpoints=None):
    out = []
    for i, (model_kw, train_kw) in enumerate(CONFIGS):
        for seed in seeds:
            model = MLPConfig(64, (40, 24), 10, init_std=0.1, **model_kw)
            ckpt = None if checkpoints is None else checkpoints / f"m{i}-s{seed}.pt"
            out.append(Member(model, recipe(seed, epochs, **train_kw), ckpt, f"m{i}-s{seed}"))
    return out


def strip(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def assert_same(result, alone):
    a, b = result.model.state_dict(), alone.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert strip(result.history) == strip(alone.history)
    assert (result.test_errors, result.n_test) == (alone.test_errors, alone.n_test)
    assert result.test_error == alone.test_error


@pytest.mark.parametrize("threads", [1, 2])
def test_each_member_is_bit_identical_to_training_it_alone(threads):
    torch.set_num_threads(threads)
    state = torch.get_rng_state()
    ms = members()
    results = train_ensemble(ms, DATA, progress="none")
    assert torch.equal(torch.get_rng_state(), state)
    assert len({stack_key(m.model, m.train) for m in ms}) == 1
    for m, result in zip(ms, results, strict=True):
        alone = train(m.model, m.train, DATA, progress="none")
        assert_same(result, alone)
        assert result.threads == threads and result.finished
    # the members do differ (the test would be void otherwise)
    assert len({r.history[-1]["train_loss"] for r in results}) > 2


def test_resume_mixes_with_the_single_trainer(tmp_path):
    ms = members(epochs=4, checkpoints=tmp_path)
    full = [train(m.model, m.train, DATA, progress="none") for m in ms]
    # the ensemble stops after 2 epochs; one member then goes on alone for one more epoch
    part = train_ensemble(ms, DATA, progress="none", stop_after=2)
    assert all(not r.finished and len(r.history) == 2 for r in part)
    train(ms[1].model, ms[1].train, DATA, checkpoint=ms[1].checkpoint, progress="none",
          stop_after=3)  # fmt: skip
    # a member at epoch 3, the others at 2, one without a checkpoint (from epoch 0)
    ms[4].checkpoint.unlink()
    resumed = train_ensemble(ms, DATA, progress="none")
    assert [r.resumed_from for r in resumed] == [2, 3, 2, 2, 0, 2]
    for r, alone in zip(resumed, full, strict=True):
        assert_same(r, alone)
    # and a checkpoint the ensemble wrote resumes under the single trainer
    ms2 = members(epochs=4, checkpoints=tmp_path / "b")
    train_ensemble(ms2, DATA, progress="none", stop_after=3)
    alone = train(ms2[5].model, ms2[5].train, DATA, checkpoint=ms2[5].checkpoint, progress="none")
    assert alone.resumed_from == 3
    assert_same(alone, full[5])
    assert not list(tmp_path.rglob("*.tmp"))


def test_unstackable_members_refused():
    bn = MLPConfig(64, (40, 24), 10, batchnorm=True)
    assert stack_key(bn, recipe(0)) is None
    with pytest.raises(ValueError):
        train_ensemble([Member(bn, recipe(0))], DATA, progress="none")
    a = Member(MLPConfig(64, (40, 24), 10), recipe(0))
    b = Member(MLPConfig(64, (40, 20), 10), recipe(0))
    with pytest.raises(ValueError):
        train_ensemble([a, b], DATA, progress="none")
