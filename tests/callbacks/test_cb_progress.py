"""ProgressBarLogger: plain lines off a terminal, a live bar on one, only on rank 0."""

from __future__ import annotations

import io
import re

import pytest
from cb_loop import Loop, Recorder, make_state
from rich.console import Console

from tessera.core.callback import Callback
from tessera.core.errors import ConfigError
from tessera.loggers.progress import ProgressBarLogger


def test_lines_when_stdout_is_not_a_terminal(capsys):
    recorder = Recorder()
    state = make_state("12ba")
    loop = Loop(state, loggers=[ProgressBarLogger(log_interval=4), recorder], eval_every=6)
    loop.fit()
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[batch")]
    assert len(lines) == 3  # batches 4, 8, 12
    for line, step in zip(lines, (4, 8, 12)):
        assert line.startswith(f"[batch {step}/12 ")
        loss = float(re.search(r"loss (\d+\.\d+)", line).group(1))
        assert loss == pytest.approx(loop.losses[step], abs=1e-4)
        rate = float(re.search(r"([\d,]+\.\d) samples/s", line).group(1).replace(",", ""))
        assert rate > 0
        assert re.search(r"eta \d+:\d\d:\d\d", line)
    evals = [line for line in out.splitlines() if line.startswith("eval at batch")]
    assert len(evals) == 2 and re.search(r"accuracy 0\.\d{4}", evals[0])
    assert "training finished at epoch 0 batch 12" in out
    parameters = sum(p.numel() for p in state.model.parameters())
    start = out.splitlines()[0]
    assert start.startswith(f"training {type(state.model).__name__} ({parameters:,} parameters)")
    assert "from batch 0/12" in start and "world size 1" in start
    # The loss also went to the other loggers, as loss/train, on the same steps.
    losses = recorder.values("loss/train")
    assert sorted(losses) == [4, 8, 12]
    assert losses[8] == pytest.approx(loop.losses[8], rel=1e-6)


def test_epoch_runs_show_epoch_and_batch_in_epoch(capsys):
    state = make_state("2ep", samples=96)  # 6 batches per epoch
    Loop(state, loggers=[ProgressBarLogger(log_interval=3, mode="lines")]).fit()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in lines] == [
        "[epoch 1/2 batch 3/6 25%",
        "[epoch 1/2 batch 6/6 50%",
        "[epoch 2/2 batch 3/6 75%",
        "[epoch 2/2 batch 6/6 100%",
    ]


def test_stop_reason_is_shown(capsys):
    state = make_state("12ba")

    class Stop(Callback):
        def batch_end(self, state, logger):
            if state.timestamp.batch == 5:
                state.request_stop("enough")

    Loop(state, callbacks=[Stop()], loggers=[ProgressBarLogger(mode="lines")]).fit()
    assert "training stopped (enough) at epoch 0 batch 5" in capsys.readouterr().out


def test_live_bar_on_a_terminal():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    logger = ProgressBarLogger(log_interval=2, console=console)
    state = make_state("2ep", samples=64)
    Loop(state, loggers=[logger], eval_every=4).fit()
    assert logger.use_bar and logger.per_epoch
    text = buffer.getvalue()
    assert "epoch 1/2" in text and "epoch 2/2" in text
    assert "samples/s" in text and "loss " in text
    assert "eval at batch 4" in text and "epoch 2/2 done" in text
    assert logger._progress is None  # stopped by close()


def test_other_ranks_stay_silent(capsys):
    recorder = Recorder()
    state = make_state("4ba", rank=1)
    Loop(state, loggers=[ProgressBarLogger(log_interval=2, mode="lines"), recorder]).fit()
    assert capsys.readouterr().out == ""
    assert recorder.values("loss/train") == {}


def test_bad_mode():
    with pytest.raises(ConfigError, match="mode: 'fancy'"):
        ProgressBarLogger(mode="fancy")


def test_whole_run_bar_counts_in_the_duration_unit():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    logger = ProgressBarLogger(log_interval=4, console=console)
    state = make_state("192sp", batch_size=16)  # 12 batches, one bar in samples
    Loop(state, loggers=[logger]).fit()
    assert logger.use_bar and not logger.per_epoch
    frames = buffer.getvalue().split("\r")
    bars = [frame for frame in frames if frame.startswith("\x1b[2Ksamples ")]
    # Rich redraws on its own clock, so only the last frame (drawn on stop) is certain.
    assert bars and "100.0%" in bars[-1] and "loss " in bars[-1]
    assert "training finished at epoch 0 batch 12 (192 samples)" in buffer.getvalue()
