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
    assert str(config.max_duration) == "3ba"
    assert config.model.width == 8 and config.model.num_classes == 10
    assert config.optimizer.lr == 0.05
    assert config.data.batch_size == 128


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


def test_a_typo_in_any_section_is_refused_at_load_with_the_closest_name():
    typos = {
        "algorithms.blurpool.min_chanels=8": "algorithms.blurpool.min_chanels: unknown key; "
        "did you mean 'min_channels'?",
        "algorithms.blurpol.min_channels=8": "unknown algorithm 'blurpol'; did you mean "
        "'blurpool'?",
        "callbacks.speed_monitor.windw=3": "callbacks.speed_monitor.windw: unknown key; did you "
        "mean 'window'?",
        "loggers.jsonl.pth=x.jsonl": "loggers.jsonl.pth: unknown key; did you mean 'path'?",
        "parallelism.stratgy=fsdp": "parallelism.stratgy: unknown key; did you mean 'strategy'?",
        "scheduler.t_wramup=2ba": "scheduler.t_wramup: unknown key; did you mean 't_warmup'?",
        "compile.scpe=blocks": "compile.scpe: unknown key; did you mean 'scope'?",
    }
    with pytest.raises(ConfigError) as info:
        load_config(RECIPE, list(typos))
    for expected in typos.values():  # every problem at once
        assert expected in str(info.value)
    result = run_cli("config", "show", str(RECIPE), "algorithms.blurpool.min_chanels=8")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "did you mean 'min_channels'?" in result.stderr


def test_moved_keys_name_their_new_place():
    with pytest.raises(ConfigError) as info:
        load_config(RECIPE, ["algorithms.compile.scope=blocks", "model.activation_checkpointing=1"])
    assert "algorithms.compile: this key has moved; use compile" in str(info.value)
    assert "model.activation_checkpointing: this key has moved; use activation_checkpointing" in (
        str(info.value)
    )


def test_cross_field_checks_fail_at_load():
    with pytest.raises(ConfigError) as info:
        load_config(
            RECIPE,
            [
                "parallelism.strategy=fsdp",
                "parallelism.param_dtype=bfloat16",
                "algorithms.sam={}",
                "precision=amp_fp16",
                "scheduler.t_warmup=100tok",
            ],
        )
    message = str(info.value)
    assert "param_dtype: 'bfloat16' computes in bfloat16 but precision is 'amp_fp16'" in message
    assert "algorithms.sam: SAM's two-pass step cannot run under the fp16" in message
    assert "scheduler: 100tok cannot be placed in a run whose max_duration is 2ep" in message


def test_python_and_yaml_share_every_default(small_loaders, classifier):
    from tessera.config.build import settings_of
    from tessera.trainer import Trainer, TrainerSettings

    train, _ = small_loaders()
    trainer = Trainer(classifier(), train, "2ep", run_dir=None, loggers=[], device="cpu")
    minimal = {"max_duration": "2ep", "model": {"name": "resnet"}}
    minimal["data"] = {"name": "fashion_mnist"}
    from tessera.config import validate_config

    from_yaml = TrainerSettings(**settings_of(validate_config(minimal))).model_dump(mode="json")
    from_python = trainer.settings.model_dump(mode="json")
    from_yaml.update(run_dir=None, device="cpu")  # the two keywords this test sets
    assert from_python == from_yaml
    callbacks = sorted(type(c).__name__ for c in trainer.state.callbacks)
    assert {"SpeedMonitor", "LRMonitor"} <= set(callbacks)  # the default monitors


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
    assert main(["config", "show", str(RECIPE), "seed=7", "algorithms.blurpool={}"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["seed"] == 7 and shown["model"]["blocks_per_stage"] == [1, 1, 1]
    # every field of every section, with its resolved default
    assert shown["algorithms"]["blurpool"]["min_channels"] == 16
    assert shown["callbacks"]["speed_monitor"]["window"] == 20
    assert shown["loggers"]["jsonl"]["path"] == "metrics.jsonl"
    assert shown["parallelism"]["bucket_cap_mb"] == 25.0


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
    message = result.stderr
    assert message.startswith("error: data.path: ") and "/nonexistent/fmnist" in message
    assert "which does not exist" in message and "data root" in message
    assert "tessera data download fashion-mnist" in result.stderr


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
