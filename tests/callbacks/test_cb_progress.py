"""ProgressBarLogger in the real Trainer: plain lines off a terminal, a live bar on one, each
showing the loss the model computed at that step and logging it as `loss/train`."""

from __future__ import annotations

import io
import re

import pytest
import torch
import torch.distributed as dist
from cb_support import (
    BATCH,
    BatchClock,
    LossLog,
    Pixels,
    Recorder,
    Sleep,
    make_trainer,
    train_loader,
)
from rich.console import Console
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tessera.core.callback import Callback
from tessera.core.model import model_name
from tessera.loggers.progress import ProgressBarLogger
from tessera.models import ModuleWithLoss


def test_lines_when_stdout_is_not_a_terminal(tmp_path, capsys):
    losses, clock, recorder = LossLog(), BatchClock(), Recorder()
    trainer = make_trainer(
        tmp_path,
        "12ba",
        model=Pixels(loss_fn=losses),
        callbacks=[clock, Sleep(batch=0.02)],
        loggers=[ProgressBarLogger(log_interval=4), recorder],
        eval_interval="6ba",
    )
    trainer.fit()
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[batch")]
    assert [line.split("]")[0] for line in lines] == [
        "[batch 4/12 33%",
        "[batch 8/12 67%",
        "[batch 12/12 100%",
    ]
    for line, step in zip(lines, (4, 8, 12)):
        shown = float(re.search(r"loss (\d+\.\d{4})", line).group(1))
        assert shown == pytest.approx(losses.losses[step - 1], abs=5e-5)
        assert re.search(r"eta \d+:\d\d:\d\d", line)
    # samples/s between the log steps at batches 4 and 8, the evaluation after batch 6 left out.
    rate = float(re.search(r"([\d,]+\.\d) samples/s", lines[1]).group(1).replace(",", ""))
    (start, end), *_ = clock.evaluations
    seconds = clock.ends[7] - clock.ends[3] - (end - start)
    assert rate == pytest.approx(4 * BATCH / seconds, rel=0.02)

    evals = [line for line in out.splitlines() if line.startswith("eval at batch")]
    assert [line.split(":")[0] for line in evals[:2]] == ["eval at batch 6", "eval at batch 12"]
    shown = float(re.search(r"accuracy (\d\.\d{4})", evals[1]).group(1))
    assert shown == pytest.approx(trainer.state.eval_results["eval"]["accuracy"], abs=5e-5)
    assert "training finished at epoch 0 batch 12" in out
    parameters = sum(p.numel() for p in trainer.state.model.parameters())
    start = next(line for line in out.splitlines() if line.startswith("training "))
    assert start.startswith(f"training Pixels ({parameters:,} parameters) from batch 0/12")
    assert "world size 1" in start
    # The loss went to the other loggers as loss/train, on the log steps.
    logged = recorder.values("loss/train")
    assert logged == pytest.approx({step: losses.losses[step - 1] for step in (4, 8, 12)})


def test_epoch_runs_show_finished_epochs_and_the_batch_in_the_next(tmp_path, capsys):
    """The bar counts finished epochs, as checkpoint names do (ep1-ba6: one epoch done)."""
    make_trainer(
        tmp_path,
        "2ep",
        train_data=train_loader(96),  # 6 batches per epoch
        loggers=[ProgressBarLogger(log_interval=3, mode="lines")],
        evaluate=False,
        save_interval="1ep",
        keep_last=None,
    ).fit()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in lines] == [
        "[epochs done 0/2, batch 3/6 25%",
        "[epochs done 0/2, batch 6/6 50%",
        "[epochs done 1/2, batch 3/6 75%",
        "[epochs done 1/2, batch 6/6 100%",
    ]
    saved = sorted(p.stem for p in (tmp_path / "run" / "checkpoints").glob("ep*-ba*.pt"))
    assert saved == ["ep1-ba6", "ep2-ba12"]  # after "epochs done 0/2, batch 6/6": ep1


class StopAt(Callback):
    def __init__(self, batch: int) -> None:
        super().__init__()
        self.batch = batch

    def batch_end(self, state, logger) -> None:
        if state.timestamp.batch == self.batch:
            state.request_stop("enough")


def test_the_reason_a_run_stopped_is_shown(tmp_path, capsys):
    make_trainer(
        tmp_path,
        "12ba",
        callbacks=[StopAt(5)],
        loggers=[ProgressBarLogger(mode="lines")],
        evaluate=False,
    ).fit()
    assert "training stopped (enough) at epoch 0 batch 5" in capsys.readouterr().out


def test_a_live_bar_per_epoch_on_a_terminal(tmp_path):
    buffer = io.StringIO()
    logger = ProgressBarLogger(
        log_interval=2, console=Console(file=buffer, force_terminal=True, width=120)
    )
    losses = LossLog()
    make_trainer(
        tmp_path,
        "2ep",
        model=Pixels(loss_fn=losses),
        train_data=train_loader(64),  # 4 batches per epoch
        loggers=[logger],
        eval_interval="4ba",
    ).fit()
    assert logger.use_bar and logger.per_epoch
    text = buffer.getvalue()
    assert "epochs done 0/2" in text and "epochs done 1/2" in text
    assert "eval at batch 4" in text and "epochs done 2/2 loss" in text
    # The epoch summary line shows the loss of the last log step (batch 8).
    done = re.search(r"epochs done 2/2 loss (\d+\.\d{4})", text)
    assert float(done.group(1)) == pytest.approx(losses.losses[7], abs=5e-5)
    assert logger._progress is None  # stopped when the run closed


def test_a_whole_run_bar_counts_in_the_duration_unit(tmp_path):
    buffer = io.StringIO()
    logger = ProgressBarLogger(
        log_interval=4, console=Console(file=buffer, force_terminal=True, width=120)
    )
    make_trainer(tmp_path, f"{12 * BATCH}sp", loggers=[logger], evaluate=False).fit()
    assert logger.use_bar and not logger.per_epoch
    frames = buffer.getvalue().split("\r")
    bars = [frame for frame in frames if frame.startswith("\x1b[2Ksamples ")]
    # Rich redraws on its own clock, so only the last frame (drawn on stop) is certain.
    assert bars and "100.0%" in bars[-1] and "loss " in bars[-1]
    assert f"training finished at epoch 0 batch 12 ({12 * BATCH} samples)" in buffer.getvalue()


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.flatten(1))


def test_the_start_line_names_the_model_not_its_wrappers(tmp_path, capsys):
    model = ModuleWithLoss(Classifier())
    make_trainer(tmp_path, "1ba", model=model, loggers=[ProgressBarLogger()], evaluate=False).fit()
    start = next(line for line in capsys.readouterr().out.splitlines() if "parameters)" in line)
    assert start.startswith("training Classifier (7,850 parameters)"), start
    assert model_name(Pixels()) == "Pixels"  # an adapter subclass is named by its own class
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        assert model_name(DistributedDataParallel(model)) == "Classifier"
    finally:
        dist.destroy_process_group()
