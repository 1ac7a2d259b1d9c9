"""Refuse a damaged `index.json` before anything is read through it.

An index is the data set: a wrong count silently drops or invents samples, a wrong column
decodes garbage. Every field is checked for its type and range, the counts against each other,
and every path for staying inside the data set; a problem is a `DataError` naming the file, the
shard entry and the field, never a TypeError from deep inside a reader.
"""

from __future__ import annotations

import re
from typing import Any

from tessera.core.errors import DataError
from tessera.data.columns import COLUMN_TYPES_HELP, parse_columns
from tessera.data.format import COMPRESSIONS, FORMAT_NAME, FORMAT_VERSION

HASHES = ("xxh3_64",)
MAX_SAMPLES = 2**32 - 1  # a shard header holds its count in 32 bits
_HEX = re.compile(r"[0-9a-f]{16}")


def check_index(index: Any, where: str) -> dict[str, Any]:
    """The index, checked (its `num_samples` filled in when absent)."""
    if not isinstance(index, dict) or index.get("format") != FORMAT_NAME:
        raise DataError(f"{where} is not a Tessera shard index (no 'format': '{FORMAT_NAME}').")
    version = index.get("version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise DataError(
            f"Index {where} has format version {version!r}; this Tessera reads version "
            f"{FORMAT_VERSION}. Rewrite the data set with this version's "
            "`tessera data convert`, or install the Tessera version that wrote it."
        )
    for key in ("columns", "shards"):
        if key not in index:
            raise DataError(f"Index {where} has no {key!r} entry; the file is damaged.")
    _check_columns(index["columns"], where)
    if index.get("hash", HASHES[0]) not in HASHES:
        raise DataError(
            f"Index {where}: checksums of kind {index['hash']!r} cannot be checked; this "
            f"Tessera reads {', '.join(HASHES)}."
        )
    shards = index["shards"]
    if not isinstance(shards, list):
        raise DataError(
            f"Index {where}: 'shards' is {_kind(shards)}, not a list of shard entries; the "
            "file is damaged."
        )
    paths: set[str] = set()
    for number, shard in enumerate(shards):
        _check_shard(shard, number, where, paths)
    total = sum(shard["samples"] for shard in shards)
    stated = index.get("num_samples", total)
    if stated != total or isinstance(stated, bool):
        raise DataError(
            f"Index {where} says num_samples is {stated!r}, but its {len(shards)} shard entries "
            f"hold {total:,} samples; the file is damaged (one of the counts is wrong)."
        )
    index["num_samples"] = total
    return index


def _check_columns(columns: Any, where: str) -> None:
    if not isinstance(columns, dict) or not columns:
        raise DataError(
            f"Index {where}: 'columns' is {_kind(columns)}; it must map each column name to its "
            'type, e.g. {"image": "image:png", "label": "int"}. The file is damaged.'
        )
    for name, kind in columns.items():
        if not isinstance(kind, str):
            raise DataError(
                f"Index {where}: column {name!r} has type {kind!r}, not a type name "
                f"({COLUMN_TYPES_HELP})."
            )
    try:
        parse_columns(columns)
    except DataError as error:
        raise DataError(f"Index {where}: {error}") from None


def _check_shard(shard: Any, number: int, where: str, paths: set[str]) -> None:
    if not isinstance(shard, dict):
        raise DataError(f"Index {where}: shard entry {number} is {_kind(shard)}, not an object.")
    missing = {"path", "samples", "raw_bytes"} - set(shard)
    if missing:
        raise DataError(f"Index {where}: shard entry {number} lacks {sorted(missing)}.")
    label = f"Index {where}: shard entry {number}"
    path = _relative_path(shard["path"], f"{label} 'path'")
    samples = shard["samples"]
    if not _is_int(samples) or not 1 <= samples <= MAX_SAMPLES:
        raise DataError(
            f"{label} ({path}) has 'samples' {samples!r}; a shard holds a whole number of "
            f"samples from 1 to {MAX_SAMPLES:,}. The file is damaged."
        )
    if not _is_int(shard["raw_bytes"]) or shard["raw_bytes"] < 16:
        raise DataError(
            f"{label} ({path}) has 'raw_bytes' {shard['raw_bytes']!r}; it must be the shard's "
            "size in bytes (an integer of at least 16). The file is damaged."
        )
    for key in ("raw_hash", "stored_hash"):
        value = shard.get(key)
        if value is not None and not (isinstance(value, str) and _HEX.fullmatch(value)):
            raise DataError(
                f"{label} ({path}) has {key!r} {value!r}; it must be 16 hex digits (an xxh3_64 "
                "checksum) or null. The file is damaged."
            )
    compression = shard.get("compression")
    if compression not in (None, *COMPRESSIONS):
        raise DataError(
            f"{label} ({path}) uses compression {compression!r}; supported: "
            f"{', '.join(COMPRESSIONS)} (or null for none)."
        )
    stored = path
    if compression is not None:
        if "stored_path" not in shard:
            raise DataError(f"{label} ({path}) is compressed but has no 'stored_path'.")
        stored = _relative_path(shard["stored_path"], f"{label} 'stored_path'")
        if "stored_bytes" in shard and (
            not _is_int(shard["stored_bytes"]) or shard["stored_bytes"] < 0
        ):
            raise DataError(f"{label} ({path}) has 'stored_bytes' {shard['stored_bytes']!r}.")
    for name in {path, stored}:
        if name in paths:
            raise DataError(f"{label}: the file {name} is listed twice; the file is damaged.")
        paths.add(name)


def _relative_path(value: Any, label: str) -> str:
    if not isinstance(value, str) or not value:
        raise DataError(f"{label} is {value!r}; it must name a file in the data set's folder.")
    parts = value.split("/")
    if value.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts or "\\" in value:
        raise DataError(
            f"{label} is {value!r}, which points outside the data set; shard paths are "
            "relative to the folder holding index.json (like 'shard.00000.tshd')."
        )
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return f"a {type(value).__name__} ({value!r:.60})"
