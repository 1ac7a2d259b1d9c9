"""Helpers for the run tests: a tiny deterministic character-GPT recipe on real text, the
environment for `tessera` subprocesses, and bounded waits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from safetensors.torch import load_file

from tessera.data.root import data_root

SHARED_DATA = data_root()
SRC = Path(__file__).resolve().parents[2] / "src"


def tiny_recipe(folder: Path, name: str = "tiny", **fields: Any) -> Path:
    """A one-layer character GPT on 20k characters of Tiny Shakespeare: 4 sequences of 16
    characters a batch, a checkpoint every batch, deterministic, constant learning rate."""
    text = folder / "shakespeare-20k.txt"  # ASCII: 20k bytes are 20k characters
    text.exists() or text.write_bytes(
        (SHARED_DATA / "tinyshakespeare/input.txt").read_bytes()[:20_000]
    )
    tokenizer = f"char:{text}"
    recipe = {
        "name": name,
        "run_dir": str(folder / "runs"),
        "seed": 1,
        "max_duration": "60ba",
        "eval_interval": "30ba",
        "save_interval": "1ba",
        "keep_last": 2,
        "deterministic": True,
        "device": "cpu",
        "model": {
            "name": "gpt",
            "tokenizer": tokenizer,
            "max_seq_len": 16,
            "n_layer": 1,
            "n_head": 1,
            "d_model": 16,
            "bias": False,
        },
        "data": {
            "name": "text",
            "text": str(text),
            "tokenizer": tokenizer,
            "seq_len": 16,
            "batch_size": 4,
            "eval_batch_size": 8,
            "eval_max_sequences": 8,
        },
        "optimizer": {"name": "sgdw", "lr": 0.05, "momentum": 0.9},
        "scheduler": {"name": "constant"},
        "callbacks": {},
        "loggers": {"jsonl": {}},
        **fields,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def environment(home: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not _launcher_variable(key)}
    env.update(
        TESSERA_HOME=str(home),
        TESSERA_HEARTBEAT_INTERVAL="0.05",
        OMP_NUM_THREADS="1",
        COLUMNS="200",  # rich tables unwrapped
        PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")])),
    )
    env.update(extra)
    return env


def _launcher_variable(key: str) -> bool:
    return key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID") or key in (
        "TESSERA_RUN_ID",
        "TESSERA_SUPERVISED",
    )


def tessera(*arguments: str, env: dict[str, str], timeout: float = 120, **kwargs: Any):
    """Run `python -m tessera.cli ARGUMENTS` to its end (its own session; killed on timeout)."""
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
        **kwargs,
    )


def start(*arguments: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start `python -m tessera.cli ARGUMENTS` in the background, output to `log`."""
    with open(log, "wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "tessera.cli", *arguments],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(condition: Callable[[], Any], timeout: float, what: str, poll: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def heartbeat(run: Path) -> dict[str, Any]:
    try:
        return json.loads((run / "heartbeat.json").read_text())
    except (OSError, ValueError):
        return {}


def weights(run: Path) -> dict:
    return load_file(str(run / "final" / "model.safetensors"))


def assert_bit_identical(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected)
    different = [name for name in expected if not (actual[name] == expected[name]).all()]
    assert not different, f"tensors that differ: {different}"
