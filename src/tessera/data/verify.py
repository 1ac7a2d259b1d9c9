"""Summarize a shard data set and verify every checksum (`tessera data inspect`)."""

from __future__ import annotations

from typing import Any

import zstandard

from tessera.data.format import INDEX_NAME, load_index, shard_hash
from tessera.data.reader import find_bad_samples
from tessera.data.storage import Storage


def summarize(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Index facts: samples, shards, sizes, compression, columns."""
    root = Storage(url, storage_options)
    index = load_index(root.read_bytes(INDEX_NAME, "index"), root.join(INDEX_NAME))
    shards = index["shards"]
    raw = sum(int(s["raw_bytes"]) for s in shards)
    stored = sum(int(s.get("stored_bytes", s["raw_bytes"])) for s in shards)
    return {
        "location": root.url,
        "format_version": index["version"],
        "samples": index["num_samples"],
        "shards": len(shards),
        "raw_bytes": raw,
        "stored_bytes": stored,
        "compression": sorted({str(s.get("compression")) for s in shards}),
        "hashed": all(s.get("raw_hash") for s in shards),
        "columns": index["columns"],
        "samples_per_shard": (
            min(int(s["samples"]) for s in shards) if shards else 0,
            max(int(s["samples"]) for s in shards) if shards else 0,
        ),
    }


def verify(
    url: str, storage_options: dict[str, Any] | None = None, progress: bool = True
) -> list[str]:
    """Download every shard and check its checksums; returns one line per problem found."""
    from rich.progress import Progress

    root = Storage(url, storage_options)
    index = load_index(root.read_bytes(INDEX_NAME, "index"), root.join(INDEX_NAME))
    problems: list[str] = []
    first = 0
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("verifying shards", total=len(index["shards"]))
        for shard in index["shards"]:
            problems.extend(_check_shard(root, shard, first))
            first += int(shard["samples"])
            bar.advance(task)
    return problems


def _check_shard(root: Storage, shard: dict[str, Any], first: int) -> list[str]:
    compressed = shard.get("compression") == "zstd"
    stored_path = shard.get("stored_path", shard["path"]) if compressed else shard["path"]
    name = root.join(stored_path)
    try:
        data = root.read_bytes(stored_path, "shard")
    except Exception as error:  # report and continue with the other shards
        return [f"{name}: cannot be read ({error})"]
    problems = []
    if compressed:
        if shard.get("stored_hash") and shard_hash(data) != shard["stored_hash"]:
            problems.append(f"{name}: compressed file checksum does not match the index")
        try:
            data = zstandard.ZstdDecompressor().decompress(
                data, max_output_size=int(shard["raw_bytes"])
            )
        except zstandard.ZstdError as error:
            return [*problems, f"{name}: cannot be decompressed ({error})"]
    if len(data) != int(shard["raw_bytes"]):
        problems.append(f"{name}: {len(data)} bytes, the index says {shard['raw_bytes']}")
    if shard.get("raw_hash") and shard_hash(data) != shard["raw_hash"]:
        bad = find_bad_samples(data, name)
        if bad is None:
            problems.append(f"{name}: checksum mismatch and unreadable header")
        else:
            listed = ", ".join(f"{i} (global index {first + i})" for i in bad[:10])
            problems.append(f"{name}: checksum mismatch; bad samples: {listed or 'none found'}")
    return problems
