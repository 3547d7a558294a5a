import io

import pytest

from dropkit_lab.engine.progress import PlainProgress, SilentProgress, make_progress


def record(epoch, test_error=0.1):
    return {"epoch": epoch, "train_loss": 0.5, "test_error": test_error}


def test_plain_progress_thins_lines_and_reports_resume():
    stream = io.StringIO()
    bar = PlainProgress(stream)
    bar.start(total=100, initial=40, desc="run")
    for epoch in range(40, 100):
        bar.update(record(epoch))
    lines = stream.getvalue().splitlines()
    assert lines[0] == "run: resuming after epoch 40/100"
    assert lines[1].startswith("run: epoch 45/100, loss 0.5000, test err 10.00%")
    assert lines[-1].startswith("run: epoch 100/100")
    assert len(lines) == 1 + 12


def test_make_progress_kinds():
    assert isinstance(make_progress("none"), SilentProgress)
    assert isinstance(make_progress("plain"), PlainProgress)
    custom = PlainProgress()
    assert make_progress(custom) is custom
    with pytest.raises(ValueError, match="progress must be"):
        make_progress("fancy")


def test_tqdm_bar_when_installed(capsys):
    pytest.importorskip("tqdm")
    bar = make_progress("tqdm")
    bar.start(total=3, initial=0, desc="bar")
    for epoch in range(3):
        bar.update(record(epoch, None))
    bar.close()
    assert "bar" in capsys.readouterr().err
