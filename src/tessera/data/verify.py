"""Summarize a shard data set and verify every checksum (`tessera data inspect`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tessera.data.columns import parse_columns
from tessera.data.format import (
    HEADER,
    INDEX_NAME,
    SampleDecoder,
    columns_hash,
    load_index,
    shard_hash,
)
from tessera.data.reader import decompress, examine
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
        columns = parse_columns(index["columns"])
        decoder = SampleDecoder(columns, decode_images=False)
        for shard in index["shards"]:
            problems.extend(_check_shard(root, shard, first, decoder, columns_hash(columns)))
            first += int(shard["samples"])
            bar.advance(task)
    return problems


def _check_shard(
    root: Storage, shard: dict[str, Any], first: int, decoder: SampleDecoder, layout: int
) -> list[str]:
    index = root.join(INDEX_NAME)
    compressed = shard.get("compression") == "zstd"
    stored_path = shard["stored_path"] if compressed else shard["path"]
    name = root.join(stored_path)
    try:
        data = root.read_bytes(stored_path, "shard")
    except Exception as error:  # report and continue with the other shards
        return [f"{name}: cannot be read ({error})"]
    problems = []
    if compressed:
        if shard.get("stored_hash") and shard_hash(data) != shard["stored_hash"]:
            problems.append(f"{name}: compressed file checksum does not match the index")
        data, problem = decompress(data, int(shard["raw_bytes"]), name)
        if problem is not None and not data:
            return [*problems, f"{name}: {problem}; none of its samples can be read"]
        if problem is not None:
            problems.append(f"{name}: {problem}")
    report = examine(data, shard, name, check_hash=True)
    if report is not None:
        if report.bad is None:
            return [*problems, f"{name}: {report.problem}; none of its samples can be read"]
        listed = ", ".join(f"{i} (global index {first + i})" for i in report.bad[:10])
        more = f" and {len(report.bad) - 10} more" if len(report.bad) > 10 else ""
        return [*problems, f"{name}: {report.problem}: samples {listed}{more}"]
    file_layout = HEADER.unpack_from(data, 0)[4]
    if file_layout and file_layout != layout:
        return [
            *problems,
            f"{name}: written with other columns than {index} lists ({decoder.names}); the "
            "index is damaged or belongs to another data set",
        ]
    view = memoryview(data)
    offsets = np.frombuffer(data, dtype="<u8", count=int(shard["samples"]) + 1, offset=HEADER.size)
    for i in range(int(shard["samples"])):
        try:
            decoder(view[int(offsets[i]) : int(offsets[i + 1])])
        except Exception as error:  # the index's columns do not fit the sample's bytes
            problems.append(
                f"{name}: sample {i} (global index {first + i}) does not decode as the columns "
                f"{decoder.names} of {index} ({type(error).__name__}: {error})"
            )
            break
    return problems
