"""Progress on stderr (runs/progress.py): a line every N steps and at the end when there is no terminal."""

from exolam.runs.progress import Lines, bar


def test_lines_every_n_steps_and_at_the_end(capsys):
    lines = Lines(total=5, start=0, desc="train", every=2, unit="upd")
    for k in range(5):
        lines.update(1)
        lines.set_postfix(loss=f"{1.0 / (k + 1):.3g}")
    err = capsys.readouterr().err.splitlines()
    assert [ln.split(",")[0] for ln in err] == ["[train] 2/5 upd", "[train] 4/5 upd", "[train] 5/5 upd"]
    assert err[-1].endswith("ETA 0:00, loss 0.25") and "upd/s" in err[0]  # the postfix set before the update


def test_no_terminal_and_no_interval_means_silence(capsys):
    assert bar(10, 0, "x") is None  # pytest's stderr is not a terminal
    assert bar(10, 0, "x", show=False, every=1) is None
    assert isinstance(bar(10, 3, "x", every=5), Lines)
    assert capsys.readouterr().err == ""
