"""Bad files and bad resumes, through the real `tessera` entry point: each is refused with exit 2
and one paragraph naming the file, the tensor or the setting, and leaves the run as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fuzz_support import Result, run_cli

RECIPE = {
    "name": "tiny",
    "seed": 0,
    "max_duration": "2ba",
    "save_interval": "1ba",
    "eval_interval": "2ba",
    "precision": "fp32",
    "model": {"name": "resnet", "width": 4, "blocks_per_stage": [1, 1, 1]},
    "data": {"name": "fashion_mnist", "batch_size": 8, "train_subset": 32, "eval_subset": 32},
    "optimizer": {"name": "sgdw", "lr": 0.1, "momentum": 0.9},
    "loggers": {"jsonl": {}},
}


def refused(result: Result, *names: str) -> str:
    """The one-paragraph message of a clean refusal that names each of `names`."""
    message = result.stderr.strip()
    assert result.code == 2, (result.code, message[-2000:])
    assert message.startswith("error: ") and "Traceback" not in message, message[-2000:]
    assert "\n\n" not in message, message
    for name in names:
        assert name in message, (name, message)
    return message


@pytest.fixture(scope="module")
def run(tmp_path_factory, fashion_mnist_dir) -> tuple[Path, Path]:
    """(recipe, run folder) of a finished 2-batch run with a checkpoint after each batch."""
    folder = tmp_path_factory.mktemp("bad-runs")
    recipe = folder / "tiny.yaml"
    data = {**RECIPE["data"], "path": str(fashion_mnist_dir)}
    recipe.write_text(yaml.safe_dump({**RECIPE, "data": data, "run_dir": str(folder / "runs")}))
    result = run_cli(["train", str(recipe)])
    assert result.code == 0, result.stderr[-2000:]
    return recipe, folder / "runs" / "tiny"


@pytest.mark.parametrize(
    "content", [b"\x00\x01\xff\xfe\x80", "name: tiny\n".encode("utf-16")], ids=["binary", "utf16"]
)
def test_a_recipe_that_is_not_utf8_text_is_refused(tmp_path, content):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_bytes(content)
    for command in (["config", "show"], ["train"]):
        refused(run_cli([*command, str(recipe)]), str(recipe), "UTF-8")


def test_resume_into_a_model_of_another_shape_names_the_tensor_and_both_shapes(run):
    recipe, folder = run
    before = (folder / "config.yaml").read_text()
    result = run_cli(["train", str(recipe), "max_duration=3ba", "model.width=8"])
    refused(result, "stem.0.weight", "checkpoint (4, 1, 3, 3) vs model (8, 1, 3, 3)")
    assert (folder / "config.yaml").read_text() == before  # the refused run wrote nothing


def test_resume_with_another_optimizer_is_refused(run):
    recipe, _ = run
    text = yaml.safe_load(recipe.read_text())
    text["optimizer"] = {"name": "adamw", "lr": 0.001}
    other = recipe.with_name("adam.yaml")
    other.write_text(yaml.safe_dump(text))
    result = run_cli(["train", str(other), "max_duration=3ba"])
    refused(result, "another optimizer", "AdamW", "momentum")


def test_eval_with_another_model_shape_names_the_tensor_and_both_shapes(run):
    _, folder = run
    result = run_cli(["eval", str(folder), "model.width=8"])
    refused(result, "fc.weight: file (10, 16) vs model (10, 32)", "config.yaml")


def test_a_run_folder_whose_final_is_a_file_is_refused(run, tmp_path):
    recipe, _ = run
    text = yaml.safe_load(recipe.read_text())
    text["run_dir"] = str(tmp_path)
    other = tmp_path / "tiny.yaml"
    other.write_text(yaml.safe_dump(text))
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "final").write_text("not a folder")
    refused(run_cli(["train", str(other)]), str(tmp_path / "tiny" / "final"), "not a folder")
    assert (tmp_path / "tiny" / "final").read_text() == "not a folder"


@pytest.mark.parametrize("override", ["a..b=1", ".=1", "=1", "model.=1", ".seed=1", "seed"])
def test_a_malformed_override_is_refused_quoting_it(tmp_path, override):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    refused(run_cli(["config", "show", str(recipe), override]), repr(override).strip("'"))
