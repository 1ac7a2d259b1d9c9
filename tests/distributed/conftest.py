"""Shared runs for the distributed tests: a one-process reference run, and the same recipe on
two DDP processes through the launcher (the uninterrupted run the restart test must equal)."""

from __future__ import annotations

import pytest
from dist_support import summary, tiny_recipe, train


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """One process, no parallelism."""
    folder = tmp_path_factory.mktemp("reference")
    result = train(tiny_recipe(folder))
    return {"run": folder / "runs" / "tiny", "summary": summary(result)}


@pytest.fixture(scope="session")
def ddp_run(tmp_path_factory):
    """Two processes, DDP (the default strategy), same global batch."""
    folder = tmp_path_factory.mktemp("ddp")
    result = train(tiny_recipe(folder), "--nproc", "2")
    return {"run": folder / "runs" / "tiny", "summary": summary(result)}
