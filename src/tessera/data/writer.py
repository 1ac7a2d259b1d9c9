"""Write samples into shards plus an index: `ShardWriter` and `merge_indexes`.

The index is written last, and every shard reaches its final name complete (temporary name and
rename locally, one PUT on object stores), so an interrupted write never leaves an index that
points at a missing or partial shard.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import zstandard

from tessera.core.errors import DataError
from tessera.data.columns import parse_columns
from tessera.data.format import (
    INDEX_NAME,
    SHARD_SUFFIX,
    build_shard,
    columns_hash,
    dump_index,
    encode_sample,
    load_index,
    make_index,
    shard_hash,
)
from tessera.data.storage import Storage, write_atomic

logger = logging.getLogger(__name__)
DEFAULT_SHARD_SIZE = 64 * 2**20
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20}
_UNITS |= {"gib": 2**30, "k": 2**10, "m": 2**20, "g": 2**30}


def parse_size(value: int | str, what: str = "size") -> int:
    """Bytes from an int or a string such as "64MiB", "500kb", "2GB"."""
    if isinstance(value, int) and value > 0:
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS or float(match.group(1)) <= 0:
        raise DataError(
            f"{what} {value!r} is not a size; give a positive number of bytes or a string such "
            "as '64MiB', '500KB' or '2GB'."
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_compression(compression: str | None) -> tuple[str | None, int]:
    """(algorithm, level) from None, "zstd" or "zstd:<level>"."""
    if compression in (None, "", "none"):
        return None, 0
    name, _, level = str(compression).partition(":")
    if name != "zstd" or (level and not (level.isdigit() and 1 <= int(level) <= 22)):
        raise DataError(
            f"Compression {compression!r} is not supported; use None, 'zstd' or 'zstd:<level>' "
            "(level 1-22, default 3)."
        )
    return "zstd", int(level or 3)


class ShardWriter:
    """Writes samples (mappings of column name to value) into shards under `out`.

    `out` is a local folder or an fsspec URL. `columns` maps names to types (see
    docs/data/format.md). `shard_size` bounds a shard's uncompressed size. To write in parallel,
    give each writer its own `part` (a sub-folder name) and call `merge_indexes(out)` after.
    """

    def __init__(
        self,
        out: str,
        columns: dict[str, str],
        compression: str | None = None,
        shard_size: int | str = DEFAULT_SHARD_SIZE,
        hashes: bool = True,
        part: str | None = None,
        overwrite: bool = False,
        storage_options: dict[str, Any] | None = None,
    ):
        self.columns = parse_columns(columns)
        self.layout = columns_hash(self.columns)
        self.compression, self.level = parse_compression(compression)
        self.shard_size = parse_size(shard_size, "shard_size")
        self.hashes = hashes
        if part:
            out = f"{out.rstrip('/')}/{part.strip('/')}"
        self.root = Storage(out, storage_options)
        if self.root.exists(INDEX_NAME):
            if not overwrite:
                raise DataError(
                    f"{self.root.join(INDEX_NAME)} already exists; pass "
                    "overwrite=True (--overwrite) to replace that data set, or write elsewhere."
                )
            self.root.remove(INDEX_NAME)  # old shards are orphaned, never mixed
        self.shards: list[dict[str, Any]] = []
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._count = 0
        self._closed = False
        self.index: dict[str, Any] | None = None
        self._staging = tempfile.mkdtemp(prefix="tessera-shards-") if self.root.remote else None

    def write(self, sample: Mapping[str, Any]) -> None:
        """Add one sample; starts a new shard when the current one would exceed `shard_size`."""
        if self._closed:
            raise DataError("This ShardWriter is closed; open a new one to write more samples.")
        data = encode_sample(self.columns, sample, f"#{self._count}")
        if self._pending and self._pending_bytes + len(data) > self.shard_size:
            self._flush()
        self._pending.append(data)
        self._pending_bytes += len(data)
        self._count += 1

    def _flush(self) -> None:
        raw = build_shard(self._pending, self.layout)
        name = f"shard.{len(self.shards):05d}{SHARD_SUFFIX}"
        entry: dict[str, Any] = {
            "path": name,
            "samples": len(self._pending),
            "raw_bytes": len(raw),
            "raw_hash": shard_hash(raw) if self.hashes else None,
            "compression": self.compression,
        }
        stored = raw
        if self.compression == "zstd":
            stored = zstandard.ZstdCompressor(level=self.level, write_checksum=True).compress(raw)
            name += ".zst"
            entry["stored_path"] = name
            entry["stored_bytes"] = len(stored)
            entry["stored_hash"] = shard_hash(stored) if self.hashes else None
        self._store(name, stored)
        self.shards.append(entry)
        self._pending, self._pending_bytes = [], 0

    def _store(self, relative: str, data: bytes) -> None:
        if self._staging is None:
            write_atomic(self.root.join(relative), data)
            return
        local = os.path.join(self._staging, "shard")
        with open(local, "wb") as file:
            file.write(data)
        self.root.put_file(local, relative)

    def close(self) -> dict[str, Any]:
        """Write the last shard and then the index; returns the index."""
        if self._closed:
            raise DataError("This ShardWriter is already closed.")
        if self._pending:
            self._flush()
        index = make_index(self.columns, self.shards)
        self.root.write_bytes(INDEX_NAME, dump_index(index))
        self._finish()
        self.index = index
        return index

    def _finish(self) -> None:
        self._closed = True
        if self._staging:
            shutil.rmtree(self._staging, ignore_errors=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:  # no index: the shards written so far are orphans, never a valid data set
            logger.warning("write to %s interrupted; no index written", self.root.url)
            self._finish()


def merge_indexes(
    out: str, parts: list[str] | None = None, storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Combine the indexes of parts written in parallel (sub-folders of `out`) into one index at
    `out`. Parts default to every sub-folder holding an index, in name order."""
    root = Storage(out, storage_options)
    if parts is None:
        parts = [path.rsplit("/", 1)[0] for path in root.glob(f"*/{INDEX_NAME}")]
    if not parts:
        raise DataError(f"No part indexes (*/{INDEX_NAME}) found under {root.url} to merge.")
    columns: dict[str, str] | None = None
    shards: list[dict[str, Any]] = []
    for part in parts:
        where = root.join(f"{part}/{INDEX_NAME}")
        index = load_index(root.read_bytes(f"{part}/{INDEX_NAME}", "part index"), where)
        if columns is None:
            columns = index["columns"]
        elif index["columns"] != columns:
            raise DataError(
                f"Part {where} has columns {index['columns']}, unlike the first part's {columns}; "
                "only parts with the same columns can be merged."
            )
        for shard in index["shards"]:
            shard = dict(shard)
            for key in ("path", "stored_path"):
                if shard.get(key) and not shard[key].startswith(f"{part}/"):
                    shard[key] = f"{part}/{shard[key]}"
            shards.append(shard)
    assert columns is not None
    index = make_index(parse_columns(columns), shards)
    root.write_bytes(INDEX_NAME, dump_index(index))
    return index
