"""Seeding and deterministic mode, and the random state that checkpoints carry.

Deterministic mode asks PyTorch for deterministic kernels; together with seeded dataloaders and
the RNG states saved in every checkpoint, a run killed and resumed ends with the same weights
bit for bit as one that never stopped (same machine, same thread count).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_deterministic_mode() -> None:
    """Ask every library for deterministic kernels; errors if an op has none."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def rng_state() -> dict[str, Any]:
    """Every random generator's state, as plain types and tensors (safe to load weights-only)."""
    version, mt_state, gauss = random.getstate()
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(mt_state), "gauss": gauss},
        "numpy": {
            "key": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def load_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    numpy = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy["key"].numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without moving any global random stream (Python, NumPy, torch, CUDA).

    What the block draws is undone when it ends. The trainer creates data iterators and runs
    evaluations inside it: a `DataLoader` without its own generator draws its workers' seed
    from the global torch RNG, and a run resumed mid-epoch creates its iterator at another point
    of that stream than a run that never stopped, so dropout would differ from then on.
    """
    saved = rng_state()
    try:
        yield
    finally:
        load_rng_state(saved)


def worker_seed(base_seed: int, epoch: int, worker_id: int = 0) -> int:
    """A seed for one dataloader worker in one epoch, independent of where the run resumed."""
    return (base_seed * 1_000_003 + epoch * 10_007 + worker_id) % 2**63
