"""JSONLLogger: real runs write parseable lines holding the logged metrics and steps."""

from __future__ import annotations

import json

import pytest
import torch
from cb_loop import Loop, make_state

from tessera.callbacks.lr_monitor import LRMonitor
from tessera.callbacks.speed_monitor import SpeedMonitor
from tessera.core.event import Event
from tessera.core.logger import Logger
from tessera.loggers.jsonl import JSONLLogger, read_jsonl
from tessera.loggers.progress import ProgressBarLogger


def test_run_writes_loss_throughput_lr_and_eval_lines(tmp_path, capsys):
    path = tmp_path / "run" / "metrics.jsonl"
    state = make_state("20ba")
    loop = Loop(
        state,
        callbacks=[SpeedMonitor(window=5, log_interval=5), LRMonitor(log_interval=5)],
        loggers=[ProgressBarLogger(log_interval=5, mode="lines"), JSONLLogger(path)],
        eval_every=10,
    )
    loop.fit()

    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all("time" in r and "step" in r for r in records)
    losses = {r["step"]: r["loss/train"] for r in records if "loss/train" in r}
    assert sorted(losses) == [5, 10, 15, 20]
    for step, loss in losses.items():
        assert loss == pytest.approx(loop.losses[step], rel=1e-6)
    speeds = [r for r in records if "throughput/samples_per_sec" in r]
    assert [r["step"] for r in speeds] == [5, 10, 15, 20]
    assert all(r["throughput/samples_per_sec"] > 0 for r in speeds)
    assert [r["lr/group0"] for r in records if "lr/group0" in r] == [0.1] * 4
    evals = [r for r in records if "metrics/eval/accuracy" in r]
    assert [r["step"] for r in evals] == [10, 20]
    assert all(0.0 <= r["metrics/eval/accuracy"] <= 1.0 for r in evals)
    # Training on real images for 20 batches beats chance (10%) clearly.
    assert evals[-1]["metrics/eval/accuracy"] > 0.3
    times = [r["time"] for r in records]
    assert times == sorted(times)


def test_resume_appends_marker_and_cuts_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    first = JSONLLogger(path)
    first.log_metrics({"loss/train": 1.5}, step=1)
    first.log_metrics({"loss/train": 1.25}, step=2)
    first.close(None, None)  # type: ignore[arg-type]
    with open(path, "a") as file:  # a crash in the middle of writing a line
        file.write('{"step": 3, "loss/tr')

    state = make_state("20ba")
    state.timestamp = state.timestamp.after_batch(16).after_batch(16)
    resumed = JSONLLogger(path)
    Logger([resumed])
    resumed.init(state, Logger([resumed]))
    resumed.after_load(state, Logger([resumed]))
    resumed.log_metrics({"loss/train": torch.tensor(1.0)}, step=3)
    resumed.close(state, Logger([resumed]))

    records = list(read_jsonl(path))
    assert [r.get("step") for r in records] == [1, 2, None, 3]
    assert records[2]["resumed_at"] == 2
    assert records[3]["loss/train"] == 1.0
    assert all(line.startswith("{") for line in path.read_text().splitlines())


def test_non_finite_values_stay_valid_json(tmp_path):
    path = tmp_path / "m.jsonl"
    logger = JSONLLogger(path)
    logger.log_metrics({"a": float("nan"), "b": float("inf"), "c": -float("inf")}, step=7)
    logger.log_hyperparameters({"lr": 0.1, "model": {"width": 8}})
    logger.close(None, None)  # type: ignore[arg-type]
    for line in path.read_text().splitlines():
        json.loads(line, parse_constant=lambda name: pytest.fail(f"bare {name} in JSON"))
    metrics, hyper = list(read_jsonl(path))
    assert (metrics["a"], metrics["b"], metrics["c"]) == ("nan", "inf", "-inf")
    assert hyper["hyperparameters"] == {"lr": 0.1, "model": {"width": 8}}


def test_each_line_is_on_disk_before_the_next_call(tmp_path):
    path = tmp_path / "m.jsonl"
    logger = JSONLLogger(path)
    logger.log_metrics({"x": 1.0}, step=1)
    # Read by another handle while the logger's file is still open: already flushed.
    assert json.loads(path.read_text())["x"] == 1.0
    logger.close(None, None)  # type: ignore[arg-type]


def test_only_rank_zero_writes(tmp_path):
    path = tmp_path / "m.jsonl"
    state = make_state("4ba", rank=1)
    logger = JSONLLogger(path)
    logger.init(state, Logger([logger]))
    logger.log_metrics({"x": 1.0}, step=1)
    logger.close(state, Logger([logger]))
    assert not path.exists()
    assert Event.INIT  # the logger learns its rank at INIT
