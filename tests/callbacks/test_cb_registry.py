"""The `callbacks:` and `loggers:` sections: names to objects through each component's Config,
and every typo or bad value refused (at load, too) with the field and the closest valid name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic_core import PydanticUndefined

from tessera.callbacks import CALLBACKS, build_callbacks
from tessera.callbacks.early_stopping import EarlyStopper, ThresholdStopper
from tessera.callbacks.speed_monitor import SpeedMonitor
from tessera.cli.main import main
from tessera.core.errors import ConfigError, UserError
from tessera.core.time import Time, TimeUnit
from tessera.loggers import LOGGERS, build_loggers
from tessera.loggers.jsonl import JSONLLogger
from tessera.loggers.progress import ProgressBarLogger
from tessera.loggers.tensorboard import TensorBoardLogger

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "fashion-mnist-resnet.yaml"
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
  tensorboard: {log_dir: tb, flush_secs: 5}
"""
REGISTRIES = {"callbacks": CALLBACKS, "loggers": LOGGERS}
ENTRIES = [(section, name) for section, registry in REGISTRIES.items() for name in registry.names()]


def test_every_name_builds_from_yaml_with_its_options(tmp_path):
    spec = yaml.safe_load(RUN_YAML)
    speed, lr, memory, early, threshold = build_callbacks(spec["callbacks"])
    assert isinstance(speed, SpeedMonitor) and speed.config.window == 50
    assert speed.schedule.time == Time(25, TimeUnit.BATCH)
    assert lr.schedule.time == memory.schedule.time == Time(10, TimeUnit.BATCH)  # own default
    assert isinstance(early, EarlyStopper) and early.config.patience == Time(2, TimeUnit.EPOCH)
    assert (early.label, early.metric, early.config.min_delta) == ("eval", "accuracy", 0.01)
    assert isinstance(threshold, ThresholdStopper) and threshold.config.threshold == 0.85
    assert threshold.config.mode == "max" and early.config.mode == "max"

    progress, jsonl, board = build_loggers(spec["loggers"], tmp_path)
    assert isinstance(progress, ProgressBarLogger)
    assert progress.schedule.time == Time(25, TimeUnit.BATCH)  # a bare number is batches
    assert isinstance(jsonl, JSONLLogger) and jsonl.path == tmp_path / "metrics.jsonl"
    assert isinstance(board, TensorBoardLogger) and board.log_dir == tmp_path / "tb"
    assert board.config.flush_secs == 5
    assert set(CALLBACKS.names()) >= {
        "speed_monitor",
        "lr_monitor",
        "memory_monitor",
        "early_stopping",
        "threshold_stopping",
        "cost_monitor",
        "step_timer",
        "provenance",
        "icl_evaluation",  # tessera.eval's callback (tests/eval test it)
        "loss_guard",
    }
    assert set(LOGGERS.names()) >= {"progress", "jsonl", "tensorboard", "mlflow", "wandb"}


def test_python_keywords_and_recipe_options_give_the_same_config():
    spec = {"monitor": "eval/loss", "patience": "500ba", "min_delta": 0.5}
    (built,) = build_callbacks({"early_stopping": spec})
    assert EarlyStopper(**spec).config == built.config
    assert EarlyStopper(built.config).config == built.config
    with pytest.raises(ConfigError, match=r"^EarlyStopper: give either a config or keyword"):
        EarlyStopper(built.config, mode="max")


def test_empty_and_switched_off_entries():
    assert build_callbacks(None) == []
    assert build_callbacks({}) == []
    built = build_callbacks({"lr_monitor": False, "speed_monitor": True})
    assert [type(c).__name__ for c in built] == ["SpeedMonitor"]


def test_there_is_no_run_wide_default_to_inject():
    with pytest.raises(TypeError):
        build_callbacks({"lr_monitor": None}, log_interval="50ba")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        build_loggers({"progress": None}, Path("."), 7)  # type: ignore[call-arg]


def test_paths_resolve_inside_the_run_folder(tmp_path):
    (relative,) = build_loggers({"jsonl": {"path": "logs/m.jsonl"}}, tmp_path)
    (absolute,) = build_loggers({"jsonl": {"path": str(tmp_path / "x.jsonl")}}, Path("/elsewhere"))
    (board,) = build_loggers({"tensorboard": None}, tmp_path)
    assert relative.path == tmp_path / "logs" / "m.jsonl"
    assert absolute.path == tmp_path / "x.jsonl"
    assert board.log_dir == tmp_path / "tensorboard"
    for name, field in (("jsonl", "path"), ("tensorboard", "log_dir")):
        with pytest.raises(ConfigError, match=rf"loggers\.{name}\.{field}: '' is not accepted"):
            build_loggers({name: {field: ""}}, tmp_path)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(
        ConfigError, match=r"callbacks: unknown callback 'speed_monitr'; did you mean 'speed_mon"
    ):
        build_callbacks({"speed_monitr": None})
    with pytest.raises(ConfigError, match=r"loggers: unknown logger 'jsonlines'.*'jsonl'"):
        build_loggers({"jsonlines": None}, Path("."))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"early_stopping": {"monitor": "eval/loss", "mode": "up"}},
            r"callbacks\.early_stopping\.mode: 'up' is not accepted: .*'max' or 'min'",
        ),
        (
            {"early_stopping": {"monitor": "accuracy"}},
            r"callbacks\.early_stopping\.monitor: 'accuracy' is not accepted: it does not name",
        ),
        (
            {"early_stopping": {"monitor": "eval/loss", "patience": 0}},
            r"callbacks\.early_stopping\.patience: 0 is not accepted: must be a positive number",
        ),
        (
            {"early_stopping": {"monitor": "eval/loss", "patience": "0ba"}},
            r"callbacks\.early_stopping\.patience: '0ba' is not accepted",
        ),
        (
            {"early_stopping": {"monitor": "eval/loss", "min_delta": -1}},
            r"callbacks\.early_stopping\.min_delta: -1 is not accepted: .*greater than or equal",
        ),
        (
            {"lr_monitor": {"log_interval": "often"}},
            r"callbacks\.lr_monitor\.log_interval: 'often' is not accepted",
        ),
        (
            {"memory_monitor": {"log_interval": 0}},
            r"callbacks\.memory_monitor\.log_interval: 0 is not accepted: 0 must be a positive",
        ),
        (
            {"threshold_stopping": {"monitor": "eval/accuracy", "threshold": True}},
            r"callbacks\.threshold_stopping\.threshold: True is not accepted: true/false",
        ),
        (
            {"threshold_stopping": {"monitor": "eval/accuracy", "threshold": float("nan")}},
            r"callbacks\.threshold_stopping\.threshold: nan is not accepted: .*finite",
        ),
        (
            {"threshold_stopping": {"monitor": "eval/accuracy"}},
            r"callbacks\.threshold_stopping\.threshold: required field is missing",
        ),
        ({"early_stopping": None}, r"callbacks\.early_stopping\.monitor: required field"),
        ({"memory_monitor": [1, 2]}, r"callbacks\.memory_monitor: expected a mapping"),
    ],
)
def test_bad_values_name_the_component_the_field_and_what_is_accepted(spec, expected):
    with pytest.raises(ConfigError, match=expected):
        build_callbacks(spec)


def test_loggers_bad_values():
    with pytest.raises(ConfigError, match=r"loggers\.progress\.mode: 'fancy' is not accepted"):
        build_loggers({"progress": {"mode": "fancy"}}, Path("."))
    with pytest.raises(ConfigError, match=r"loggers\.tensorboard\.flush_secs: 0 is not accepted"):
        build_loggers({"tensorboard": {"flush_secs": 0}}, Path("."))
    with pytest.raises(ConfigError, match=r"console: 'stdout' is not a rich Console"):
        ProgressBarLogger(console="stdout")  # type: ignore[arg-type]


def valid_options(config_class) -> dict:
    """The required fields of a Config, from the examples each one must declare."""
    options = {}
    for field_name, field in config_class.model_fields.items():
        if field.default is PydanticUndefined and field.default_factory is None:
            assert field.examples, (
                f"{config_class.__name__}.{field_name} is required but declares no examples=; "
                "give one so the generated tests can build the component"
            )
            options[field_name] = field.examples[0]
    return options


def misspelt(field_name: str) -> str:
    return field_name + field_name[-1]  # 'window' -> 'windoww'


@pytest.mark.parametrize(("section", "name"), ENTRIES)
def test_every_option_of_every_component_refuses_a_typo_and_a_bad_value(section, name):
    """Generated from the registries: a new callback or logger is covered with no new test."""
    registry = REGISTRIES[section]
    config_class = registry.config_class(name)
    valid = valid_options(config_class)
    config, problems = registry.validate_mapping({name: valid})
    assert problems == [] and isinstance(config[name], config_class)
    if not config_class.model_fields:  # a component without options refuses any
        _, problems = registry.validate_mapping({name: {"window": 1}})
        assert problems == [f"{section}.{name}.window: unknown key; it takes no options."]
        return
    for field_name in config_class.model_fields:
        typo = misspelt(field_name)
        _, problems = registry.validate_mapping({name: {**valid, typo: 1}})
        (problem,) = problems  # the intended name first among the close ones
        assert problem.startswith(
            f"{section}.{name}.{typo}: unknown key; did you mean '{field_name}'"
        ), problem
        not_a_value = [["not a value"]]  # no field of a callback or logger takes this
        _, problems = registry.validate_mapping({name: {**valid, field_name: not_a_value}})
        (problem,) = problems
        named = f"{section}.{name}.{field_name}"
        assert problem.startswith(named) and len(problem) > len(named) + 10, problem
        # From Python, the same check with the class's name.
        component = registry.get(name)
        with pytest.raises(ConfigError, match=rf"\.{typo}: unknown key; did you mean"):
            component(**valid, **{typo: 1})


def test_a_recipe_with_typos_in_both_sections_is_refused_at_load(capsys):
    code = main(
        [
            "config",
            "show",
            str(RECIPE),
            "callbacks.speed_monitor.windw=8",
            "callbacks.early_stopping={monitor: eval/accuracy, mode: biggest}",
            "loggers.jsonl.pth=m.jsonl",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "callbacks.speed_monitor.windw: unknown key; did you mean 'window'?" in err
    assert "callbacks.early_stopping.mode: 'biggest' is not accepted" in err
    assert "loggers.jsonl.pth: unknown key; did you mean 'path'?" in err
    assert "Traceback" not in err


def test_the_section_must_be_a_mapping():
    with pytest.raises(ConfigError, match="callbacks: expected a mapping"):
        build_callbacks(["speed_monitor"])  # type: ignore[arg-type]


def test_missing_tensorboard_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(UserError, match=r"pip install 'tessera-train\[tensorboard\]'"):
        build_loggers({"tensorboard": None}, tmp_path)


def test_importing_the_packages_loads_no_callback_module():
    code = (
        "import sys, tessera.callbacks, tessera.loggers; "
        "print(sorted(m for m in sys.modules if m.startswith(('tessera.callbacks.', "
        "'tessera.loggers.', 'rich.progress', 'torch'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
