"""TensorBoardLogger writes event files that TensorBoard reads back with the logged values."""

from __future__ import annotations

import pytest
from cb_loop import Loop, make_state

from tessera.callbacks.lr_monitor import LRMonitor
from tessera.loggers.progress import ProgressBarLogger
from tessera.loggers.tensorboard import TensorBoardLogger

pytest.importorskip("tensorboard")


def test_scalars_round_trip_through_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_dir = tmp_path / "tb"
    board = TensorBoardLogger(log_dir)
    state = make_state("6ba")
    loop = Loop(
        state,
        callbacks=[LRMonitor(log_interval=3)],
        loggers=[ProgressBarLogger(log_interval=3, mode="lines"), board],
        eval_every=6,
    )
    board.log_hyperparameters({"lr": 0.1, "batch_size": 16})
    loop.fit()

    events = EventAccumulator(str(log_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "lr/group0", "metrics/eval/accuracy"} <= tags
    losses = {e.step: e.value for e in events.Scalars("loss/train")}
    assert sorted(losses) == [3, 6]
    assert losses[6] == pytest.approx(loop.losses[6], rel=1e-6)
    assert [e.value for e in events.Scalars("lr/group0")] == pytest.approx([0.1, 0.1])
    assert "hyperparameters" in " ".join(events.Tags()["tensors"])


def test_other_ranks_write_nothing(tmp_path):
    log_dir = tmp_path / "tb"
    board = TensorBoardLogger(log_dir)
    state = make_state("2ba", rank=1)
    Loop(state, loggers=[board]).fit()
    board.log_metrics({"x": 1.0}, step=1)
    assert not log_dir.exists()
