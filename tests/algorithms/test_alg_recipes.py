"""The shipped Fashion-MNIST ladder recipes: each loads and builds its methods; 'hot' (which
stacks every method of the ladder) trains for a few batches through the config builder."""

from __future__ import annotations

from pathlib import Path

import pytest
from alg_support import DATA

from tessera.algorithms import build_algorithms
from tessera.algorithms.blurpool import BlurConv2d
from tessera.config.build import build_trainer
from tessera.config.load import load_config
from tessera.core.engine import order_algorithms

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
LADDER = ["baseline", "mild", "medium", "hot"]


def tiny_recipe(step: str, run_dir: Path, *overrides: str):
    """recipes/fashion-mnist-`step`.yaml on a width-8 model, 4 batches of 16, 32 test images."""
    return load_config(
        RECIPES / f"fashion-mnist-{step}.yaml",
        [
            "max_duration=4ba",
            "model.width=8",
            "data.batch_size=16",
            "data.train_subset=64",
            "data.eval_subset=32",
            f"data.path={DATA.resolve()}",
            f"run_dir={run_dir}",
            *overrides,
        ],
    )


@pytest.mark.parametrize("step", LADDER)
def test_ladder_recipe_loads_and_builds_its_methods(step):
    config = load_config(RECIPES / f"fashion-mnist-{step}.yaml")
    built = order_algorithms(build_algorithms(config.algorithms))
    assert {a.name for a in built} == set(config.algorithms or {})


def test_hot_recipe_trains_through_the_config_builder(tmp_path):
    config = tiny_recipe("hot", tmp_path, "eval_interval=2ba")
    trainer = build_trainer(config)
    methods = {algorithm.name: algorithm for algorithm in trainer.state.algorithms}
    assert set(methods) == {"selective_backprop", "blurpool", "label_smoothing", "ema"}
    trainer.fit()
    assert trainer.state.timestamp.batch == 4
    model = trainer.state.unwrapped_model
    # blurpool (min_channels 16) blurred the two strided convs of the width-8 ResNet's last stage
    assert sum(isinstance(m, BlurConv2d) for m in model.modules()) == 2
    assert methods["ema"].updates == 4
    assert "accuracy" in trainer.state.eval_results["eval"]  # the run evaluated


def test_ladder_stacks_more_methods_on_the_same_budget():
    configs = [load_config(RECIPES / f"fashion-mnist-{step}.yaml") for step in LADDER]
    methods = [set(c.algorithms or {}) for c in configs]
    assert methods[0] == set()
    assert methods[1] < methods[2] < methods[3]
    assert len({str(c.max_duration) for c in configs}) == 1


def test_fast_recipe_trains_through_the_config_builder_with_every_method(tmp_path):
    config = tiny_recipe("fast", tmp_path)
    trainer = build_trainer(config)
    names = {algorithm.name for algorithm in trainer.state.algorithms}
    assert names == set(config.algorithms)
    assert type(trainer.state.train_dataloader).__name__ == "DeviceLoader"
    trainer.fit()
    assert trainer.state.timestamp.batch == 4
    assert "accuracy" in trainer.state.eval_results["eval"]
    assert (tmp_path / "fashion-mnist-fast" / "final" / "model.safetensors").is_file()
