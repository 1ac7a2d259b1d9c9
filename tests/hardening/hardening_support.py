"""Helpers for the hardening tests: tiny real runs, files an attacker would craft, records
forged to match them, and a real file system that is full."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from tessera.core.manifest import CheckpointManifest, describe_files
from tessera.data.sampler import make_dataloader
from tessera.models import ModuleWithLoss
from tessera.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
PAGE = 4096


class RunsCode:
    """Pickles as a call that creates `marker`: what a crafted checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def tiny_trainer(run_dir: Path, sharded: bool = False, **kwargs) -> Trainer:
    """A 2-layer network on 64 fixed random samples, 8 batches per epoch, checkpointing
    every 2 batches; `sharded` trains it under FSDP (one process) with DCP checkpoints."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(
        torch.randn(64, 6, generator=generator), torch.randint(0, 3, (64,), generator=generator)
    )
    model = ModuleWithLoss(nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)))
    options = {
        "optimizers": torch.optim.AdamW(model.parameters(), lr=0.01),
        "schedulers": [],
        "device": "cpu",
        "run_dir": run_dir,
        "name": "run",
        "save_interval": "2ba",
        "keep_last": 3,
        "callbacks": [],
        "loggers": [],
    }
    if sharded:
        options["parallelism"] = {"strategy": "fsdp", "wrap": ["Linear"]}
    options.update(kwargs)
    max_duration = options.pop("max_duration", "4ba")
    return Trainer(model, make_dataloader(data, batch_size=8, seed=0), max_duration, **options)


_GPT_RECIPE = """\
name: {name}
run_dir: {run_dir}
max_duration: 8ba
save_interval: 2ba
keep_last: null
eval_interval: 100ba
deterministic: true
device: cpu
model: {{name: gpt, tokenizer: "char:{text}", max_seq_len: 16, n_layer: 1, n_head: 1, d_model: 16}}
data: {{name: text, text: "{text}", tokenizer: "char:{text}", seq_len: 16, batch_size: 4}}
optimizer: {{name: adamw, lr: 0.001}}
scheduler: {{name: constant}}
callbacks: {{}}
loggers: {{jsonl: {{}}}}
"""


def tiny_gpt_recipe(folder: Path, name: str = "gpt", run_dir: Path | None = None) -> Path:
    """A recipe for a 1-layer character GPT on a small text file written beside it: 4
    sequences per batch, 8 batches, a checkpoint every 2, every checkpoint kept."""
    text = folder / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog.\n" * 60)
    path = folder / "recipe.yaml"
    path.write_text(_GPT_RECIPE.format(name=name, run_dir=run_dir or folder / "runs", text=text))
    return path


def forge_record(checkpoints: Path, location: str) -> None:
    """Re-record a checkpoint's files with their current sizes and checksums, as someone who
    can write the folder could: the checksum check then passes, the loaders must still hold."""
    manifest = CheckpointManifest(checkpoints)
    record = manifest.find(location)
    assert record is not None, f"{location} has no record to forge"
    record.files = describe_files(checkpoints, list(record.files))
    manifest.add(record)


# -- a full disk ----------------------------------------------------------------------------


@contextmanager
def small_disk(folder: Path, size: int) -> Iterator[Path]:
    """A real tmpfs of `size` bytes mounted at `folder` (needs root, as CI runs; skipped,
    loudly, where mounting is not permitted)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"SKIPPED LOUDLY: cannot mount a tmpfs here ({mounted.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def fill(folder: Path, leave: int = 0) -> Path:
    """Write a ballast file so that about `leave` bytes (whole pages) stay free."""
    ballast = folder / "ballast"
    target = max(free_bytes(folder) - leave, 0) // PAGE * PAGE
    with open(ballast, "ab") as file:
        file.write(b"\0" * target)
    while free_bytes(folder) > leave:  # the ballast's own blocks: top it up
        with open(ballast, "ab") as file:
            try:
                file.write(b"\0" * PAGE)
            except OSError:
                break
    return ballast
