"""JSONLLogger in the real Trainer: the file holds exactly what the loggers were sent, line by
line, on disk as soon as it is sent, and a resumed run continues it after a marker."""

from __future__ import annotations

import json
import time

import pytest
import torch
from cb_support import LossLog, Pixels, Recorder, eval_loader, make_trainer

from tessera.callbacks.lr_monitor import LRMonitor
from tessera.callbacks.speed_monitor import SpeedMonitor
from tessera.core.callback import Callback
from tessera.loggers.jsonl import JSONLLogger, read_jsonl
from tessera.loggers.progress import ProgressBarLogger


def evaluated_accuracy(model: torch.nn.Module) -> float:
    """The model's accuracy on the evaluation images, computed here, not by the trainer."""
    model.eval()
    right = total = 0
    with torch.no_grad():
        for images, labels in eval_loader():
            right += int((model((images, labels)).argmax(dim=1) == labels).sum())
            total += len(labels)
    return right / total


def test_the_file_holds_what_the_loggers_were_sent(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    losses, recorder = LossLog(), Recorder()
    model = Pixels(loss_fn=losses)
    trainer = make_trainer(
        tmp_path,
        "20ba",
        model=model,
        callbacks=[SpeedMonitor(window=5, log_interval=5), LRMonitor(log_interval=5)],
        loggers=[ProgressBarLogger(log_interval=5, mode="lines"), JSONLLogger(path=path), recorder],
        eval_interval="10ba",
    )
    before = time.time()
    trainer.fit()
    after = time.time()

    records = [json.loads(line) for line in path.read_text().splitlines()]
    metrics = [r for r in records if "step" in r]
    written = [
        (r["step"], {k: v for k, v in r.items() if k not in ("step", "time")}) for r in metrics
    ]
    assert written == recorder.records  # every call, in order, values unchanged
    times = [r["time"] for r in records]
    assert times == sorted(times) and before <= times[0] and times[-1] <= after

    logged_losses = {r["step"]: r["loss/train"] for r in metrics if "loss/train" in r}
    assert logged_losses == {step: losses.losses[step - 1] for step in (5, 10, 15, 20)}
    assert [r["lr/group0"] for r in metrics if "lr/group0" in r] == [0.1] * 4
    accuracies = {
        r["step"]: r["metrics/eval/accuracy"] for r in metrics if "metrics/eval/accuracy" in r
    }
    assert sorted(accuracies) == [10, 20]
    assert accuracies[20] == pytest.approx(evaluated_accuracy(model), abs=1e-6)


def test_a_resumed_run_continues_the_file_after_a_marker_and_cuts_a_torn_line(tmp_path):
    def run(max_duration):
        return make_trainer(
            tmp_path,
            max_duration,
            callbacks=[LRMonitor(log_interval=2)],
            loggers=[JSONLLogger()],  # relative: inside the run folder
            evaluate=False,
            save_interval="4ba",
        )

    run("4ba").fit()
    path = tmp_path / "run" / "metrics.jsonl"
    assert [r["step"] for r in read_jsonl(path)] == [2, 4]
    with open(path, "a") as file:  # a crash in the middle of writing a line
        file.write('{"step": 5, "lr/gr')

    run("8ba").fit()
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is whole JSON again
    assert [r.get("step", r.get("resumed_at")) for r in records] == [2, 4, 4, 6, 8]
    assert "resumed_at" in records[2] and "step" not in records[2]


class Unusual(Callback):
    """Logs non-finite values and hyperparameters through the run's logger."""

    def fit_start(self, state, logger) -> None:
        logger.log_hyperparameters({"lr": 0.1, "model": {"width": 8}})

    def batch_end(self, state, logger) -> None:
        nan, inf = float("nan"), float("inf")
        logger.log_metrics({"a": nan, "b": inf, "c": -inf, "t": torch.tensor(2.5)}, step=7)


def test_non_finite_values_and_hyperparameters_stay_valid_json(tmp_path):
    path = tmp_path / "m.jsonl"
    logger = JSONLLogger(path=path)
    make_trainer(tmp_path, "1ba", callbacks=[Unusual()], loggers=[logger], evaluate=False).fit()
    for line in path.read_text().splitlines():
        json.loads(line, parse_constant=lambda name: pytest.fail(f"bare {name} in JSON"))
    records = list(read_jsonl(path))
    hyper = next(r for r in records if "hyperparameters" in r)
    assert hyper["hyperparameters"] == {"lr": 0.1, "model": {"width": 8}}
    metrics = next(r for r in records if r.get("step") == 7)
    assert (metrics["a"], metrics["b"], metrics["c"], metrics["t"]) == ("nan", "inf", "-inf", 2.5)


class ReadBack(Callback):
    """After the LR monitor logged at a batch, reads the file through another handle."""

    def __init__(self, path) -> None:
        super().__init__()
        self.path = path
        self.last_steps: list[int] = []

    def batch_end(self, state, logger) -> None:
        lines = self.path.read_text().splitlines()
        self.last_steps.append(json.loads(lines[-1])["step"])


def test_each_line_is_on_disk_before_training_goes_on(tmp_path):
    path = tmp_path / "m.jsonl"
    reader = ReadBack(path)
    make_trainer(
        tmp_path,
        "3ba",
        callbacks=[LRMonitor(log_interval=1), reader],
        loggers=[JSONLLogger(path=path)],
        evaluate=False,
    ).fit()
    assert reader.last_steps == [1, 2, 3]
