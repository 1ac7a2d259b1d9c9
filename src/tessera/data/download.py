"""`tessera data download`: fetch the bundled data sets into the data root, sha256-checked.

Each file is written to `NAME.part` beside its final name and renamed into place only when its
sha256 matches the published digest, so a file under its final name is always complete. An
interrupted download (a lost connection, Ctrl-C, a killed process) keeps the `.part` file and
the next attempt asks the server for the rest (an HTTP range request); a server that ignores
ranges sends the whole file again, and the command says so. Every retry, fallback to a mirror
and restart is said aloud.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera import __version__
from tessera.core.errors import DataError
from tessera.data.cache import file_lock
from tessera.data.catalog import CATALOG, DataFile, DataSet, dataset
from tessera.data.root import data_root

logger = logging.getLogger(__name__)
CHUNK = 1 << 16


@dataclass
class Fetched:
    """What happened to one file: 'downloaded', 'resumed' or 'present' (already verified)."""

    path: Path
    outcome: str
    size: int


def selected(names: list[str]) -> list[DataSet]:
    """The catalog entries for NAME... or `all`, each once, in the order given."""
    if "all" in names:
        return list(CATALOG.values())
    return [dataset(name) for name in dict.fromkeys(names)]


def download(
    names: list[str],
    root: str | Path | None = None,
    mirror: str | None = None,
    force: bool = False,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 30.0,
) -> list[Fetched]:
    """Download data sets NAME... (or `all`) into `root` (default: the data root).

    `mirror` (or `$TESSERA_DATA_MIRROR`) replaces the publishers' URLs by `MIRROR/NAME/FILE`
    (an internal copy, a machine without internet access). A file already there with the right
    digest is kept; one with another digest is an error unless `force` replaces it.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    base = Path(root).expanduser() if root is not None else data_root()
    mirror = mirror or os.environ.get("TESSERA_DATA_MIRROR") or None
    results: list[Fetched] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        for entry in selected(names):
            folder = base / entry.name
            _make_folder(folder)
            for file in entry.files:
                urls = (f"{mirror.rstrip('/')}/{entry.name}/{file.name}",) if mirror else file.urls
                task = bar.add_task(f"{entry.name}/{file.name}", total=file.size)
                results.append(
                    _fetch_file(file, folder / file.name, urls, force, bar, task, retries, timeout)
                )
    return results


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(
            f"Cannot create the data folder {folder} ({error.strerror or error}); set "
            "TESSERA_DATA_DIR (or --root) to a writable folder."
        ) from None


def _fetch_file(
    file: DataFile,
    target: Path,
    urls: tuple[str, ...],
    force: bool,
    bar: Any,
    task: Any,
    retries: int,
    timeout: float,
) -> Fetched:
    part = target.with_name(target.name + ".part")
    with file_lock(str(target.with_name(f".{target.name}.lock"))):
        if target.exists():
            actual = sha256_of(target)
            if actual == file.sha256:
                bar.update(task, completed=file.size)
                return Fetched(target, "present", file.size)
            if not force:
                raise DataError(
                    f"{target} exists but is not the published {file.name} (sha256 {actual}, "
                    f"published {file.sha256}). Pass --force to replace it with a fresh "
                    "download, or move it away."
                )
            logger.warning(
                "replacing %s (sha256 %s) with a fresh download (--force)", target, actual
            )
        resumed = part.exists() and part.stat().st_size > 0
        problems = []
        for number, url in enumerate(urls):
            if number:
                logger.warning("trying %s instead", url)
            try:
                _transfer(url, part, file, bar, task, retries, timeout)
            except DataError as error:
                problems.append(str(error))
                continue
            actual = sha256_of(part)
            if actual == file.sha256:
                os.replace(part, target)
                return Fetched(target, "resumed" if resumed else "downloaded", file.size)
            part.unlink()
            problems.append(
                f"{url} sent {file.size:,} bytes whose sha256 is {actual}, not the published "
                f"{file.sha256} (the download was deleted)"
            )
            logger.warning("%s", problems[-1])
        raise DataError(
            f"Could not download {file.name} into {target.parent}: " + "; ".join(problems) + "."
        )


def _transfer(
    url: str, part: Path, file: DataFile, bar: Any, task: Any, retries: int, timeout: float
) -> None:
    """Bring `part` up to the file's full size from `url`, resuming after lost connections."""
    for attempt in range(retries + 1):
        have = part.stat().st_size if part.exists() else 0
        if have > file.size:  # not a prefix of this file: start over
            part.unlink()
            have = 0
        if have == file.size:
            return
        try:
            _receive(url, part, have, file, bar, task, timeout)
            return
        except urllib.error.HTTPError as error:
            raise DataError(f"{url} answered HTTP {error.code} {error.reason}") from None
        except (OSError, http.client.HTTPException) as error:
            if isinstance(error, OSError) and error.errno == errno.ENOSPC:
                raise DataError(
                    f"The disk holding {part.parent} is full; {part.name} keeps the "
                    f"{part.stat().st_size:,} bytes received so far. Free space (the file is "
                    f"{file.size:,} bytes) and run the command again to resume."
                ) from None
            got = part.stat().st_size if part.exists() else 0
            if attempt == retries:
                raise DataError(
                    f"{url}: the download failed {retries + 1} times, last with "
                    f"{type(error).__name__}: {error}; {got:,} of {file.size:,} bytes are kept "
                    f"in {part} and the next run resumes from there"
                ) from None
            logger.warning(
                "%s: download interrupted at %s of %s bytes (%s); resuming (retry %d of %d)",
                url, f"{got:,}", f"{file.size:,}", error, attempt + 1, retries,
            )  # fmt: skip
            time.sleep(min(0.2 * 2**attempt, 5.0))


def _receive(
    url: str, part: Path, have: int, file: DataFile, bar: Any, task: Any, timeout: float
) -> None:
    headers = {"User-Agent": f"tessera/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if have and response.status != 206:
            logger.warning(
                "%s ignores range requests: downloading %s again from the start", url, file.name
            )
            have = 0
        elif have:
            logger.warning("resuming %s at byte %s of %s", file.name, f"{have:,}", f"{file.size:,}")
        received = have
        bar.update(task, completed=have)
        with open(part, "ab" if have else "wb") as out:
            while block := response.read(CHUNK):
                out.write(block)
                received += len(block)
                bar.update(task, completed=received)
                if received > file.size:
                    break
    if received < file.size:
        raise ConnectionError(f"the server closed the connection after {received:,} bytes")
