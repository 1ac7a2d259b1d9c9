"""Fixtures for the serving tests: a run folder holding a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from serve_support import tiny_gpt

from tessera.models.gpt import save_gpt


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder `tiny/` with `final/` holding the learned-position model."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    save_gpt(tiny_gpt(), run / "final")
    return run


@pytest.fixture(autouse=True)
def one_thread() -> object:
    """Tiny models run faster on one thread than on a pool fighting a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
