"""Shared fixtures: where the real data sets live (../shared/data beside the repository),
and a private run registry for the whole test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real data sets not found at {SHARED_DATA} (shared/ beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def fashion_mnist_dir(shared_data: Path) -> Path:
    return shared_data / "fashion-mnist"


@pytest.fixture(autouse=True)
def _work_in_a_temporary_folder(tmp_path_factory, monkeypatch):
    """Tests run in a fresh folder, so nothing (a default runs/ folder) lands in the repo."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session", autouse=True)
def private_tessera_home(tmp_path_factory) -> Path:
    """Every `tessera train` a test starts records its run here, not in ~/.tessera."""
    home = tmp_path_factory.mktemp("tessera-home")
    os.environ["TESSERA_HOME"] = str(home)
    return home
