"""TensorBoardLogger in the real Trainer: TensorBoard reads back every scalar the loggers were
sent, at its step, and the hyperparameters."""

from __future__ import annotations

import pytest
from cb_support import Recorder, make_trainer

from tessera.callbacks.lr_monitor import LRMonitor
from tessera.core.callback import Callback
from tessera.loggers.progress import ProgressBarLogger
from tessera.loggers.tensorboard import TensorBoardLogger

pytest.importorskip("tensorboard")


class Hyperparameters(Callback):
    def fit_start(self, state, logger) -> None:
        logger.log_hyperparameters({"lr": 0.1, "batch_size": 16})


def test_scalars_round_trip_through_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recorder = Recorder()
    make_trainer(
        tmp_path,
        "6ba",
        callbacks=[LRMonitor(log_interval=3), Hyperparameters()],
        loggers=[ProgressBarLogger(log_interval=3, mode="lines"), TensorBoardLogger(), recorder],
        eval_interval="6ba",
    ).fit()

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))  # the default, in the run
    events.Reload()
    sent: dict[str, dict[int, float]] = {}
    for step, metrics in recorder.records:
        for name, value in metrics.items():
            sent.setdefault(name, {})[step] = value
    assert {"loss/train", "lr/group0", "metrics/eval/accuracy"} <= set(sent)
    assert set(events.Tags()["scalars"]) == set(sent)
    for name, values in sent.items():
        read = {event.step: event.value for event in events.Scalars(name)}
        assert read == pytest.approx(values, rel=1e-6)  # stored as 32-bit floats
    (tag,) = [tag for tag in events.Tags()["tensors"] if tag.startswith("hyperparameters")]
    text = events.Tensors(tag)[0].tensor_proto.string_val[0].decode()
    assert '"lr": 0.1' in text and '"batch_size": 16' in text
