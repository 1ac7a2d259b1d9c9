"""The data root: the one folder where Tessera finds the named data sets, and where
`tessera data download` puts them (docs/data/datasets.md).

The root is `$TESSERA_DATA_DIR` when set, else `$TESSERA_HOME/data` (default
`~/.tessera/data`). Data set NAME lives in `ROOT/NAME/`: `fashion-mnist/`, `tinyshakespeare/`,
`eval/`. Everything that looks for data goes through `find_folder` / `find_file` here: the
Fashion-MNIST loader, recipes that name a data set (`text: tinyshakespeare`), the evaluation
harness's task files and the test suite. A set a system package installs (Debian's
`dataset-fashion-mnist`) is also found where the package puts it.
"""

from __future__ import annotations

import os
from pathlib import Path

from tessera.core.errors import DataError
from tessera.data.catalog import CATALOG, DataSet, dataset, reference


def data_root() -> Path:
    """`$TESSERA_DATA_DIR`, else `$TESSERA_HOME/data`, else `~/.tessera/data`."""
    if os.environ.get("TESSERA_DATA_DIR"):
        return Path(os.environ["TESSERA_DATA_DIR"]).expanduser()
    home = os.environ.get("TESSERA_HOME") or Path.home() / ".tessera"
    return Path(home).expanduser() / "data"


def search_folders(name: str, folder: str | Path | None = None) -> list[Path]:
    """Where data set `name` is looked for: only `folder` when one is given (a recipe's
    `data.path`, `--data-dir`), else `ROOT/NAME` and any system copy."""
    if folder is not None:
        return [Path(folder).expanduser()]
    system = CATALOG[name].system_folders if name in CATALOG else ()
    return [data_root() / name, *(Path(p) for p in system)]


def present(folder: Path, file: str) -> Path | None:
    """`folder/file`, or the same file uncompressed (`x.gz` -> `x`), when it exists."""
    for candidate in (folder / file, folder / file.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def find_folder(name: str, folder: str | Path | None = None) -> Path:
    """The first folder holding every file of bundled data set `name`, or a DataError that
    says where it looked and how to get the data."""
    entry = dataset(name)
    looked = search_folders(name, folder)
    for candidate in looked:
        if all(present(candidate, f.name) for f in entry.files):
            return candidate
    raise _missing(entry, looked, [f.name for f in entry.files], folder)


def find_file(name: str, file: str | None = None, folder: str | Path | None = None) -> Path:
    """File `file` (default: the set's main file) of data set `name`; also files the catalog
    does not list (your own evaluation sets in `ROOT/eval/`)."""
    entry = CATALOG.get(name)
    file = file or (entry.main_file if entry else None)
    if file is None:
        raise DataError(f"Data set {name!r} has no single main file; name one of its files.")
    looked = search_folders(name, folder)
    for candidate in looked:
        found = present(candidate, file)
        if found is not None:
            return found
    raise _missing(entry or DataSet(name, name, "", "", ()), looked, [file], folder)


def resolve(value: str, field: str, others: bool = False) -> str:
    """What a recipe's data field means: an existing path as written, else the file of the
    bundled data set it names (`tinyshakespeare`, `gsm8k`, `eval/piqa.jsonl`). With `others`,
    any other value (a URL) is returned as it is instead of refused."""
    path = Path(value).expanduser()
    if path.exists():
        return str(path)
    named = reference(value)
    if named is None and others:
        return value
    if named is None:
        names = sorted(
            [n for n, d in CATALOG.items() if d.main_file]
            + [f.name.removesuffix(".jsonl") for f in CATALOG["eval"].files]
        )
        raise DataError(
            f"{field}: {value!r} is neither an existing file (looked from {Path.cwd()}) nor a "
            f"bundled data set's name ({', '.join(names)}); give a path to your file or one of "
            "those names."
        )
    entry, file = named
    return str(find_file(entry.name, file))


def _missing(
    entry: DataSet, looked: list[Path], files: list[str], folder: str | Path | None
) -> DataError:
    where = ", ".join(str(p) for p in dict.fromkeys(looked))
    names = ", ".join(files)
    published = {f.name for f in entry.files}
    downloadable = bool(published) and set(files) <= published
    if folder is not None:
        state = "which lacks them" if Path(folder).expanduser().is_dir() else "which does not exist"
        return DataError(
            f"{entry.title}: {names} not found; looked in {where}, {state}. Point it at a folder "
            f"holding {names}, or leave it out to use the data root ({data_root()})"
            + (f", where `tessera data download {entry.name}` puts it." if downloadable else ".")
        )
    root = data_root()
    hint = ""
    if all(present(root, f) for f in files):
        hint = (
            f" TESSERA_DATA_DIR={root} is the {entry.name} folder itself; set it to the folder "
            f"that holds {entry.name}/ instead (the data root)."
        )
    fix = (
        f"Run `tessera data download {entry.name}` to fetch it into the data root {root}, or "
        if downloadable
        else f"Put {names} in {root / entry.name}, or "
    )
    return DataError(
        f"{entry.title} not found; looked for {names} in {where}.{hint} {fix}set "
        f"TESSERA_DATA_DIR to the folder that holds {entry.name}/ (the data root; default "
        "~/.tessera/data)."
    )
