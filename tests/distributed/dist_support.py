"""Helpers for the distributed tests: a tiny GPT recipe on real text, and running `tessera
train` as a real command (its own processes, gloo on CPU) with a hard timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from safetensors.torch import load_file

from tessera.data.root import data_root

SHARED_DATA = data_root()
TIMEOUT = 150  # seconds for one launch: startup dominates; nothing may hang CI


def tiny_recipe(folder: Path, **fields: object) -> Path:
    """A 2-layer character GPT on the first 60k characters of Tiny Shakespeare: 24 batches of
    8 sequences, a checkpoint every 2 batches, deterministic mode."""
    text = folder / "shakespeare-60k.txt"
    if not text.exists():
        source = SHARED_DATA / "tinyshakespeare" / "input.txt"
        text.write_text(source.read_text(encoding="utf-8")[:60_000], encoding="utf-8")
    tokenizer = f"char:{text}"
    recipe = {
        "name": "tiny",
        "run_dir": str(folder / "runs"),
        "seed": 1,
        "max_duration": "24ba",
        "eval_interval": "24ba",
        "save_interval": "2ba",
        "keep_last": 2,
        "deterministic": True,
        "device": "cpu",
        "model": {
            "name": "gpt",
            "tokenizer": tokenizer,
            "max_seq_len": 32,
            "n_layer": 2,
            "n_head": 2,
            "d_model": 32,
            "bias": False,
        },
        "data": {
            "name": "text",
            "text": str(text),
            "tokenizer": tokenizer,
            "seq_len": 32,
            "batch_size": 8,
            "eval_batch_size": 16,
            "eval_max_sequences": 32,
        },
        # A small step keeps 1- and 2-process runs within float rounding of each other (a
        # large one amplifies the different summation order of the all-reduce step by step).
        "optimizer": {"name": "sgdw", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4},
        # Constant: the resume tests stop the first part early with a shorter max_duration,
        # which would reshape a schedule that depends on the run's length.
        "scheduler": {"name": "constant"},
        "callbacks": {},
        "loggers": {"progress": {"log_interval": "1ba"}, "jsonl": {}},
        **fields,
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RANK", None)  # never inherit a launcher's settings
    env.pop("WORLD_SIZE", None)
    env.pop("TORCHELASTIC_RUN_ID", None)
    env["OMP_NUM_THREADS"] = "1"
    return env


def train(recipe: Path, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `tessera train RECIPE ARGUMENTS...` in its own process group (killed on timeout)."""
    command = [sys.executable, "-m", "tessera.cli", "train", str(recipe), *arguments]
    result = subprocess.run(
        command,
        cwd=recipe.parent,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        start_new_session=True,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def summary(result: subprocess.CompletedProcess) -> dict:
    """The JSON line rank 0 prints at the end (torchrun prefixes it with '[default0]:')."""
    for line in reversed(result.stdout.splitlines()):
        start = line.find('{"run"')
        if start >= 0:
            return json.loads(line[start:])
    raise AssertionError(f"no summary line in:\n{result.stdout}\n{result.stderr}")


def weights(run: Path) -> dict:
    return load_file(str(run / "final" / "model.safetensors"))


def train_losses(run: Path) -> dict[int, float]:
    losses = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "loss/train" in record:
            losses[record["step"]] = record["loss/train"]
    return losses


def assert_same_weights(actual: dict, expected: dict, atol: float = 1e-4) -> None:
    assert sorted(actual) == sorted(expected)
    for name, tensor in expected.items():
        difference = (actual[name] - tensor).abs().max().item()
        assert difference <= atol, f"{name} differs by {difference}"
