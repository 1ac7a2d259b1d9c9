"""Shared fixtures: tiny real runs (a char GPT on Tiny Shakespeare, Fashion-MNIST ResNets)
trained through `tessera train` in-process, and helpers to call the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tessera.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"


def tiny_char_overrides(shakespeare: Path, run_dir: Path, name: str = "char") -> list[str]:
    """The shakespeare-char recipe shrunk to a few CPU seconds."""
    spec = f"char:{shakespeare}"
    return [
        f"model.tokenizer={spec}",
        f"data.text={shakespeare}",
        f"data.tokenizer={spec}",
        "max_duration=6ba",
        "eval_interval=3ba",
        "save_interval=null",
        "model.n_layer=1",
        "model.d_model=32",
        "model.n_head=2",
        "model.max_seq_len=32",
        "data.seq_len=32",
        "data.eval_max_sequences=16",
        "device=cpu",
        f"run_dir={run_dir}",
        f"name={name}",
        "loggers.progress.mode=lines",
        "loggers.progress.log_interval=2",
    ]


def tiny_vision_overrides(fashion: Path, run_dir: Path, name: str, width: int, epochs: int):
    return [
        f"data.path={fashion}",
        "data.train_subset=512",
        "data.eval_subset=256",
        "data.batch_size=128",
        f"model.width={width}",
        f"max_duration={epochs}ep",
        "eval_interval=1ep",
        "save_interval=null",
        "device=cpu",
        f"run_dir={run_dir}",
        f"name={name}",
        "loggers.progress.mode=lines",
    ]


def tessera(*args: str) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="session")
def shakespeare(shared_data: Path) -> Path:
    return shared_data / "tinyshakespeare" / "input.txt"


@pytest.fixture(scope="session")
def char_run(tmp_path_factory: pytest.TempPathFactory, shakespeare: Path) -> Path:
    """A finished 6-batch char-GPT run with cost.json (price $3.60 per GPU hour)."""
    runs = tmp_path_factory.mktemp("char-runs")
    recipe = RECIPES / "shakespeare-char.yaml"
    assert tessera("train", recipe, *tiny_char_overrides(shakespeare, runs), "--price", "3.6") == 0
    return runs / "char"
