"""The local shard cache shared by every process on a node.

Shards are downloaded to a temporary name, checked against the index's checksums, decompressed,
and renamed into place, so a reader never sees a partial or unverified file. Processes coordinate
through `flock` file locks (released by the kernel when a process dies, so a killed run leaves
nothing that blocks the next one): one process downloads a shard while the others wait for it.
With a size limit, the least recently used shards are evicted; readers that still have an
evicted shard open keep reading it (POSIX unlink semantics). Data with no remote copy (a data set
read in place) is never evicted.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from tessera.core.errors import DataError
from tessera.data.format import INDEX_NAME, SHARD_SUFFIX, SampleDecoder, shard_hash
from tessera.data.reader import ShardFile, decompress, examine, inspect_shard
from tessera.data.storage import MissingFile, Storage, write_atomic

logger = logging.getLogger(__name__)
LOCKS = ".locks"
CORRUPT_REUSE_S = 600.0  # how long a damaged copy stands in for its shard


@contextmanager
def file_lock(path: str) -> Iterator[None]:
    """An exclusive inter-process lock on `path` (created if needed)."""
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


class ShardCache:
    """Gives the local path of each shard of one data set, downloading it on first use.

    `source` is where the shards live; `folder` is the cache folder. With `read_in_place`, the
    uncompressed shards of a local source are read where they are. `limit` (bytes) bounds the
    cache; `verify` checks each shard's checksum when it enters the cache (or, read in place,
    when first opened here).
    `on_corrupt` is "fail" (raise) or "skip" (keep the good samples and skip the bad ones).
    """

    def __init__(
        self,
        source: Storage,
        folder: str,
        shards: list[dict[str, Any]],
        limit: int | None = None,
        verify: bool = True,
        on_corrupt: str = "fail",
        read_in_place: bool = False,
    ):
        self.source = source
        self.read_in_place = read_in_place and not source.remote
        self.folder = folder
        self.shards = shards
        self.limit = limit
        self.verify = verify
        self.on_corrupt = on_corrupt
        self.bad_samples: dict[int, set[int] | None] = {}
        self.downloads = 0
        self.downloaded_bytes = 0
        self._checked: set[int] = set()
        self.first = [0]
        for shard in shards:
            self.first.append(self.first[-1] + int(shard["samples"]))
        largest = max((int(s["raw_bytes"]) for s in shards), default=0)
        if limit is not None and limit < largest:
            raise DataError(
                f"The cache limit {limit:,} bytes is smaller than the largest shard "
                f"({largest:,} bytes); raise cache_limit to at least two shards' size "
                f"(>= {2 * largest:,} bytes) or write smaller shards."
            )

    def in_place(self, shard_id: int) -> bool:
        return self.read_in_place and not self.shards[shard_id].get("compression")

    def cached_name(self, shard_id: int) -> str:
        shard = self.shards[shard_id]
        stem = shard["path"].replace("/", "__").removesuffix(SHARD_SUFFIX)
        tag = f".{shard['raw_hash'][:16]}" if shard.get("raw_hash") else ""
        return f"{stem}{tag}{SHARD_SUFFIX}"

    def whole_shard_bad(self, shard_id: int) -> bool:
        """Whether none of the shard's samples can be read (known after `path`)."""
        return shard_id in self.bad_samples and self.bad_samples[shard_id] is None

    def path(self, shard_id: int) -> str:
        """The local path of shard `shard_id`, downloading and verifying it if needed. A
        damaged shard is an error, or with on_corrupt='skip' its bad samples are recorded in
        `bad_samples` (and `whole_shard_bad` says when none survives)."""
        shard = self.shards[shard_id]
        if self.in_place(shard_id):
            path = self.source.join(shard["path"])
            if shard_id not in self._checked:
                self._checked.add(shard_id)
                if not os.path.exists(path):
                    self._corrupt(
                        shard_id, path, None, f"it does not exist, yet {self.index} lists it"
                    )
                elif self.verify or os.path.getsize(path) != int(shard["raw_bytes"]):
                    with open(path, "rb") as file:
                        self._check(shard_id, file.read(), path)
            return path
        path = os.path.join(self.folder, self.cached_name(shard_id))
        if self._touch(path):
            return path
        corrupt = path + ".corrupt"
        os.makedirs(os.path.join(self.folder, LOCKS), exist_ok=True)
        with file_lock(os.path.join(self.folder, LOCKS, self.cached_name(shard_id))):
            if self._touch(path):
                return path
            if self._recent(corrupt):  # left by a process that skipped its bad samples
                if shard_id not in self.bad_samples:
                    with open(corrupt, "rb") as file:
                        self._check(shard_id, file.read(), self.source.join(shard["path"]))
                return corrupt
            raw = self._download(shard_id)
            if self.whole_shard_bad(shard_id) and not raw:
                return corrupt  # nothing to keep; never opened
            self._make_room(max(len(raw), 1), path)
            if shard_id in self.bad_samples:
                path = corrupt
            try:
                write_atomic(path, raw, durable=False)
            except OSError as error:
                raise DataError(
                    f"Could not write shard {shard['path']} to the cache folder {self.folder} "
                    f"({error}). Free space there or point `local` at a larger disk."
                ) from None
        return path

    def open(
        self, shard_id: int, path: str, decoder: SampleDecoder, layout: int
    ) -> ShardFile | None:
        """Shard `shard_id` at `path` (from `path()`), checked against the index: its sample
        count and the columns it was written with. None when none of its samples can be read
        and on_corrupt='skip' skips them all."""
        if self.whole_shard_bad(shard_id):
            return None
        shard = self.shards[shard_id]
        name = self.source.join(shard["path"])
        damaged = shard_id in self.bad_samples
        try:
            try:
                file = ShardFile(path, name, decoder, damaged)
            except FileNotFoundError:  # evicted by another process between download and open
                file = ShardFile(self.path(shard_id), name, decoder, damaged)
        except DataError as error:  # a damaged header that was not verified (verify=False)
            self._corrupt(shard_id, name, None, "it " + str(error).removeprefix(f"Shard {name} "))
            return None
        expected = int(shard["samples"])
        if file.count != expected:
            file.close()
            said = f"its header says it holds {file.count:,} samples, {self.index} says"
            self._corrupt(shard_id, name, None, f"{said} {expected:,}")
            return None
        if file.layout and file.layout != layout:
            file.close()
            raise DataError(
                f"Shard {name} was written with other columns than {self.index} lists "
                f"({decoder.names}): the index is damaged or belongs to another data set. "
                "Write the index again (the shards themselves are intact)."
            )
        return file

    @property
    def index(self) -> str:
        return self.source.join(INDEX_NAME)

    @staticmethod
    def _recent(corrupt: str) -> bool:
        """Whether a damaged copy is young enough to reuse (the other processes of this run
        then skip the same samples without downloading again); an older one is deleted, so
        a shard repaired at its source since is downloaded again."""
        try:
            if time.time() - os.path.getmtime(corrupt) < CORRUPT_REUSE_S:
                return True
            os.unlink(corrupt)
        except FileNotFoundError:
            pass
        return False

    def _touch(self, path: str) -> bool:
        try:
            os.utime(path)  # recency for eviction
            return True
        except FileNotFoundError:
            return False

    def _download(self, shard_id: int) -> bytes:
        shard = self.shards[shard_id]
        compressed = shard.get("compression") == "zstd"
        stored_path = shard["stored_path"] if compressed else shard["path"]
        url = self.source.join(stored_path)
        for attempt in (1, 2):  # a second download tells transfer damage from a corrupt object
            try:
                data = self.source.read_bytes(stored_path, "shard")
            except MissingFile:
                self._corrupt(shard_id, url, None, f"it does not exist, yet {self.index} lists it")
                return b""
            self.downloads += 1
            self.downloaded_bytes += len(data)
            expected = shard.get("stored_hash") if compressed else shard.get("raw_hash")
            if not self.verify or expected is None or shard_hash(data) == expected:
                break
            logger.warning("shard %s failed its checksum (attempt %d)", url, attempt)
        if compressed:
            data, problem = decompress(data, int(shard["raw_bytes"]), url)
            if problem is not None:
                self._corrupt(shard_id, url, *self._damage(data, shard, url, problem))
                return data
        self._check(shard_id, data, url)
        return data

    def _check(self, shard_id: int, data: bytes, url: str) -> None:
        report = examine(data, self.shards[shard_id], url, self.verify)
        if report is not None:
            self._corrupt(shard_id, url, report.bad, report.problem)

    def _damage(
        self, data: bytes, shard: dict[str, Any], url: str, problem: str
    ) -> tuple[list[int] | None, str]:
        """The samples lost when only `data` (a prefix of the shard) could be recovered."""
        report = inspect_shard(data, url, int(shard["samples"]))
        if report is None or report.bad is None:
            return None, problem
        return report.bad, f"{problem}; {report.problem}"

    def _corrupt(self, shard_id: int, url: str, bad: list[int] | None, problem: str) -> None:
        first = self.first[shard_id]
        count = int(self.shards[shard_id]["samples"])
        if bad is None:
            which = (
                f"none of its {count:,} samples (global indices {first:,} to "
                f"{first + count - 1:,}) can be read"
            )
            lost = count
        else:
            listed = ", ".join(f"{i} (global index {first + i:,})" for i in bad[:10])
            more = f" and {len(bad) - 10:,} more" if len(bad) > 10 else ""
            which = f"samples {listed}{more} cannot be used" if bad else "every sample is intact"
            lost = len(bad)
        message = f"Shard {url} is corrupt: {problem}; {which}."
        if self.on_corrupt != "skip":
            raise DataError(
                message + " Rewrite or re-upload the shard (`tessera data inspect --verify` "
                "checks them all), or set on_corrupt='skip' (in a recipe: data.on_corrupt=skip) to "
                "skip the bad samples."
            )
        logger.warning("%s Skipping %s of its %s samples (on_corrupt='skip').",
                       message, f"{lost:,}", f"{count:,}")  # fmt: skip
        self.bad_samples[shard_id] = set(bad) if bad is not None else None

    def _make_room(self, needed: int, keep: str) -> None:
        with file_lock(os.path.join(self.folder, LOCKS, "cache.lock")):
            free = shutil.disk_usage(self.folder).free
            if self.limit is None and free < needed:
                raise DataError(
                    f"The cache folder {self.folder} has {free:,} bytes free, but the next shard "
                    f"needs {needed:,}. Free space there, point `local` at a larger disk, or set "
                    "cache_limit so old shards are evicted."
                )
            if self.limit is None:
                return
            files = []
            for entry in os.scandir(self.folder):
                if entry.name.endswith(SHARD_SUFFIX) and entry.path != keep:
                    info = entry.stat()
                    files.append((info.st_mtime, info.st_size, entry.path))
            used = sum(size for _, size, _ in files)
            for _, size, path in sorted(files):
                if used + needed <= self.limit and free >= needed:
                    break
                try:
                    os.remove(path)
                except FileNotFoundError:
                    continue
                used -= size
                free += size
            if free < needed:
                raise DataError(
                    f"The cache folder {self.folder} has {free:,} bytes free after eviction, but "
                    f"the next shard needs {needed:,}. Free space there or lower cache_limit."
                )

    def sweep_temporary(self, older_than: float = 600.0) -> None:
        """Remove temporary files that a killed process left behind."""
        if not os.path.isdir(self.folder):
            return
        now = time.time()
        for entry in os.scandir(self.folder):
            if ".tmp-" not in entry.name:
                continue
            # Another worker may finish (rename) or remove its temporary file meanwhile.
            with suppress(FileNotFoundError):
                if now - entry.stat().st_mtime > older_than:
                    os.remove(entry.path)
