"""The run file and the command line: overrides, validation errors, exit codes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tessera.cli.main import main
from tessera.config import apply_overrides, load_config
from tessera.core.errors import ConfigError

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "fashion-mnist-resnet.yaml"


def test_recipe_resolves_with_defaults_and_overrides():
    config = load_config(RECIPE, ["max_duration=3ba", "model.width=8", "optimizer.lr=0.05"])
    assert config.max_duration == "3ba"
    assert config.model["width"] == 8 and config.model["num_classes"] == 10
    assert config.optimizer.lr == 0.05
    assert config.data["batch_size"] == 128


def test_overrides_create_nested_sections_and_parse_yaml_values():
    result = apply_overrides({"a": {"b": 1}}, ["a.c=true", "d.e=[1, 2]", "f=2ep"])
    assert result == {"a": {"b": 1, "c": True}, "d": {"e": [1, 2]}, "f": "2ep"}
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["max_duration"])


def test_unknown_keys_suggest_close_names():
    with pytest.raises(ConfigError) as info:
        load_config(RECIPE, ["max_duratoin=2ep", "model.widht=3", "optimizer.momentun=0.5"])
    message = str(info.value)
    assert "max_duratoin: unknown key; did you mean 'max_duration'?" in message
    assert "optimizer.momentun: unknown key; did you mean 'momentum'?" in message


def test_unknown_model_field_is_reported_with_section():
    with pytest.raises(ConfigError, match=r"model\.widht: unknown key; did you mean 'width'"):
        load_config(RECIPE, ["model.widht=3"])


def test_wrong_types_name_field_value_and_accepted():
    with pytest.raises(ConfigError) as info:
        load_config(RECIPE, ["precision=fp8", "optimizer.lr=-1", "max_duration=3days"])
    message = str(info.value)
    assert "precision: 'fp8' is not accepted" in message and "'amp_bf16'" in message
    assert "optimizer.lr: -1 is not accepted: Input should be greater than 0" in message
    assert "max_duration: '3days' is not accepted" in message and "'ep'" in message


def test_bad_yaml_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: {name: resnet\n")
    with pytest.raises(ConfigError, match=r"bad.yaml is not valid YAML at line \d+"):
        load_config(bad)


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_cli_bad_input_exits_2_without_traceback(tmp_path):
    result = run_cli("train", str(RECIPE), "model.widht=3", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "did you mean 'width'" in result.stderr
    result = run_cli("train", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_cli_unwritable_run_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["train", str(RECIPE), f"run_dir={blocker}", "max_duration=1ba"])
    assert code == 2


def test_config_show_prints_resolved_config(capsys):
    assert main(["config", "show", str(RECIPE), "seed=7"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["seed"] == 7 and shown["model"]["blocks_per_stage"] == [1, 1, 1]


def test_missing_data_says_where_it_looked(tmp_path):
    result = run_cli(
        "train",
        str(RECIPE),
        "data.path=/nonexistent/fmnist",
        "max_duration=1ba",
        f"run_dir={tmp_path}",
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "data.path /nonexistent/fmnist does not exist" in result.stderr
    assert "dataset-fashion-mnist" in result.stderr


def test_train_then_eval_from_the_command_line(tmp_path, capsys, fashion_mnist_dir):
    overrides = [
        "max_duration=12ba",
        "data.train_subset=1536",
        "data.eval_subset=500",
        "model.width=8",
        "loggers={}",
        "callbacks={}",
        f"run_dir={tmp_path}",
        "save_interval=6ba",
        f"data.path={fashion_mnist_dir}",
    ]
    assert main(["train", str(RECIPE), *overrides]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run = tmp_path / "fashion-mnist-resnet"
    assert summary["timestamp"]["batch"] == 12
    assert (run / "config.yaml").exists() and (run / "final" / "model.safetensors").exists()
    # 12 batches is exactly one epoch: the last checkpoint is taken after the epoch ended
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == [
        "ep0-ba6.pt",
        "ep1-ba12.pt",
    ]
    assert main(["eval", str(run)]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["eval"]["eval"]["accuracy"] == pytest.approx(
        summary["eval"]["eval"]["accuracy"], abs=1e-6
    )
    # Running the same command again resumes and finds the run complete.
    assert main(["train", str(RECIPE), *overrides]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["resumed_from"].endswith("ep1-ba12.pt") and again["timestamp"]["batch"] == 12
