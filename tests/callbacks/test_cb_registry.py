"""build_callbacks / build_loggers: YAML names to objects, with errors that say what to fix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from tessera.callbacks import CALLBACKS, build_callbacks
from tessera.callbacks.early_stopping import EarlyStopper, ThresholdStopper
from tessera.callbacks.speed_monitor import SpeedMonitor
from tessera.core.errors import ConfigError, UserError
from tessera.core.time import Time, TimeUnit
from tessera.loggers import LOGGERS, build_loggers
from tessera.loggers.jsonl import JSONLLogger
from tessera.loggers.progress import ProgressBarLogger

RUN_YAML = """
callbacks:
  speed_monitor: {window: 50, log_interval: 25ba}
  lr_monitor:
  memory_monitor: {}
  early_stopping: {monitor: metrics/eval/accuracy, mode: max, patience: 2ep, min_delta: 0.01}
  threshold_stopping: {monitor: eval/accuracy, threshold: 0.85}
loggers:
  progress: {log_interval: 25}
  jsonl:
"""


def test_every_name_builds_from_yaml(tmp_path):
    spec = yaml.safe_load(RUN_YAML)
    callbacks = build_callbacks(spec["callbacks"])
    assert [type(c).__name__ for c in callbacks] == [
        "SpeedMonitor",
        "LRMonitor",
        "MemoryMonitor",
        "EarlyStopper",
        "ThresholdStopper",
    ]
    speed, *_, early, threshold = callbacks
    assert isinstance(speed, SpeedMonitor) and speed.window == 50
    assert speed.schedule.time == Time(25, TimeUnit.BATCH)
    assert isinstance(early, EarlyStopper) and early.patience == Time(2, TimeUnit.EPOCH)
    assert (early.label, early.name, early.min_delta) == ("eval", "accuracy", 0.01)
    assert isinstance(threshold, ThresholdStopper) and threshold.threshold == 0.85

    loggers = build_loggers(spec["loggers"], tmp_path)
    progress, jsonl = loggers
    assert isinstance(progress, ProgressBarLogger)
    assert progress.schedule.time == Time(25, TimeUnit.BATCH)  # a bare number is batches
    assert isinstance(jsonl, JSONLLogger) and jsonl.path == tmp_path / "metrics.jsonl"
    assert set(CALLBACKS) == {
        "speed_monitor",
        "lr_monitor",
        "memory_monitor",
        "early_stopping",
        "threshold_stopping",
        "icl_evaluation",  # tessera.eval's callback (tests/eval test it)
    }
    assert set(LOGGERS) == {"progress", "jsonl", "tensorboard"}


def test_empty_and_switched_off_entries():
    assert build_callbacks(None) == []
    assert build_callbacks({}) == []
    assert [
        type(c).__name__ for c in build_callbacks({"lr_monitor": False, "speed_monitor": True})
    ] == ["SpeedMonitor"]


def test_default_log_interval_applies_where_not_given(tmp_path):
    speed, lr = build_callbacks({"speed_monitor": {"log_interval": 5}, "lr_monitor": None}, "50ba")
    assert speed.schedule.time.value == 5 and lr.schedule.time.value == 50
    (progress,) = build_loggers({"progress": None}, tmp_path, log_interval=7)
    assert progress.schedule.time == Time(7, TimeUnit.BATCH)


def test_paths_resolve_inside_the_run_folder(tmp_path):
    (relative,) = build_loggers({"jsonl": {"path": "logs/m.jsonl"}}, tmp_path)
    (absolute,) = build_loggers({"jsonl": {"path": str(tmp_path / "x.jsonl")}}, Path("/elsewhere"))
    assert relative.path == tmp_path / "logs" / "m.jsonl"
    assert absolute.path == tmp_path / "x.jsonl"


def test_unknown_name_suggests_the_closest():
    with pytest.raises(
        ConfigError, match=r"callbacks: unknown name 'speed_monitr'; did you mean 'speed_monitor'"
    ):
        build_callbacks({"speed_monitr": None})
    with pytest.raises(ConfigError, match=r"loggers: unknown name 'jsonlines'.*'jsonl'"):
        build_loggers({"jsonlines": None}, Path("."))


def test_unknown_argument_names_callback_field_and_accepted():
    with pytest.raises(ConfigError) as error:
        build_callbacks({"speed_monitor": {"windw": 5}})
    message = str(error.value)
    assert message.startswith("callbacks.speed_monitor: unknown argument 'windw'")
    assert "did you mean 'window'" in message
    assert "window, log_interval, peak_flops_per_second" in message


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"speed_monitor": {"window": 0}}, r"^callbacks\.speed_monitor\.window: 0 must be"),
        (
            {"early_stopping": {"monitor": "eval/loss", "mode": "up"}},
            r"^callbacks\.early_stopping\.mode: 'up'.*'max' or 'min'",
        ),
        (
            {"lr_monitor": {"log_interval": "often"}},
            r"^callbacks\.lr_monitor\.log_interval: 'often'",
        ),
        (
            {"threshold_stopping": {"monitor": "eval/accuracy", "threshold": "high"}},
            r"^callbacks\.threshold_stopping\.threshold",
        ),
        ({"memory_monitor": [1, 2]}, r"^callbacks\.memory_monitor: expected a mapping"),
        (
            {"early_stopping": None},
            r"^callbacks\.early_stopping: missing required argument\(s\) 'monitor'",
        ),
        (
            {"threshold_stopping": {"monitor": "eval/accuracy"}},
            r"^callbacks\.threshold_stopping: missing required argument\(s\) 'threshold'",
        ),
    ],
)
def test_bad_values_name_callback_field_and_value(spec, expected):
    with pytest.raises(ConfigError, match=expected):
        build_callbacks(spec)


def test_section_must_be_a_mapping():
    with pytest.raises(ConfigError, match="callbacks: expected a mapping"):
        build_callbacks(["speed_monitor"])  # type: ignore[arg-type]


def test_missing_tensorboard_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(UserError, match=r"pip install 'tessera-train\[tensorboard\]'"):
        build_loggers({"tensorboard": None}, tmp_path)


def test_importing_the_packages_loads_no_callback_module():
    import subprocess

    code = (
        "import sys, tessera.callbacks, tessera.loggers; "
        "print(sorted(m for m in sys.modules if m.startswith(('tessera.callbacks.', "
        "'tessera.loggers.', 'rich.progress', 'torch'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
