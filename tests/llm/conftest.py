"""Fixtures of the LLM tests: tiny Hugging Face folders, built once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from llm_support import make_hf_folder


@pytest.fixture(scope="session")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`hf_folder(family, **options)`: a tiny model folder of that family (made once each)."""
    made: dict[str, Path] = {}

    def get(family: str, **options: object) -> Path:
        key = family + repr(sorted(options.items()))
        if key not in made:
            made[key] = make_hf_folder(tmp_path_factory.mktemp("hf") / family, family, **options)
        return made[key]

    return get
