"""Shared runs for the distributed tests: a one-process reference run that the multi-process
runs must reproduce (same recipe, same global batch)."""

from __future__ import annotations

import pytest
from dist_support import summary, tiny_recipe, train


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """One process, no parallelism: 6 batches of a tiny GPT, checkpoints at 3 and 6."""
    folder = tmp_path_factory.mktemp("reference")
    recipe = tiny_recipe(folder)
    result = train(recipe)
    return {"run": folder / "runs" / "tiny", "summary": summary(result)}
