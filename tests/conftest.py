"""Shared fixtures: the real data sets, found the way Tessera finds them, and a private run
registry for the whole test session.

The suite reads the data root (`tessera.data.root`): `$TESSERA_DATA_DIR` when set, else a
`shared/data` folder beside the repository when there is one (the project's CI layout), else
`~/.tessera/data`, where `tessera data download all` puts the data. When a data set is missing
the session stops at once with one message saying how to get it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BESIDE_REPO = REPO.parent / "shared" / "data"
if not os.environ.get("TESSERA_DATA_DIR") and BESIDE_REPO.is_dir():
    os.environ["TESSERA_DATA_DIR"] = str(BESIDE_REPO)

from tessera.core.errors import DataError  # noqa: E402
from tessera.data import root as data_lookup  # noqa: E402
from tessera.data.catalog import CATALOG  # noqa: E402

# Pinned before the session moves TESSERA_HOME (the default root lives under it); subprocesses
# that tests start inherit it.
os.environ["TESSERA_DATA_DIR"] = str(data_lookup.data_root())


def pytest_configure(config: pytest.Config) -> None:
    missing = []
    for name in CATALOG:
        try:
            data_lookup.find_folder(name)
        except DataError:
            missing.append(name)
    if missing:
        root = data_lookup.data_root()
        pytest.exit(
            f"The tests train and evaluate on real data, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not in the data root {root}. Run "
            "`tessera data download all` (about 40 MB), or set TESSERA_DATA_DIR to the folder "
            "that holds fashion-mnist/, tinyshakespeare/ and eval/.",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The data root (holds fashion-mnist/, tinyshakespeare/, eval/)."""
    return data_lookup.data_root()


@pytest.fixture(scope="session")
def shared_data(data_root: Path) -> Path:
    """The data root, under the name older tests use."""
    return data_root


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    return data_lookup.find_folder("fashion-mnist")


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
