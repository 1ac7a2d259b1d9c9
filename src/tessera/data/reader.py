"""Read samples from one raw shard file by index, without reading the rest of the shard; and
say exactly what is wrong with a damaged one (which samples survive, and why the others do not).
"""

from __future__ import annotations

import contextlib
import mmap
from dataclasses import dataclass
from typing import Any

import zstandard

from tessera.core.errors import DataError
from tessera.data.format import (
    FORMAT_VERSION,
    HEADER,
    SHARD_MAGIC,
    LayoutError,
    SampleDecoder,
    parse_shard_header,
    sample_hash,
    shard_hash,
)


@dataclass
class ShardReport:
    """What is wrong with a shard: `problem` in words, and `bad`, the samples (numbers within
    the shard) that cannot be used; None when no sample can be trusted."""

    problem: str
    bad: list[int] | None


def inspect_shard(buffer: Any, name: str, expected_count: int | None = None) -> ShardReport | None:
    """The damage in a shard's bytes, or None when its structure and every sample's checksum
    are sound. Samples whose bytes are all there and pass their checksum are never `bad`."""
    try:
        count, offsets, hashes, _ = parse_shard_header(buffer, name)
    except DataError as error:
        count = _header_count(buffer)
        if expected_count is None or count in (None, expected_count):
            return ShardReport("it " + str(error).removeprefix(f"Shard {name} ").rstrip("."), None)
    if expected_count is not None and count != expected_count:
        return ShardReport(
            f"its header says it holds {count:,} samples, the index says {expected_count:,}", None
        )
    ends, size = offsets.tolist(), len(buffer)
    table_end = HEADER.size + 12 * count + 8
    view = memoryview(buffer)
    bad = [
        i
        for i in range(count)
        if not table_end <= ends[i] <= ends[i + 1] <= size
        or sample_hash(view[ends[i] : ends[i + 1]]) != int(hashes[i])
    ]
    problems = []
    if ends[-1] > size:
        problems.append(f"it is truncated: {size:,} bytes, its offsets table ends at {ends[-1]:,}")
    elif ends[-1] < size:
        problems.append(f"it has {size - ends[-1]:,} unexpected bytes after its last sample")
    if bad:
        problems.append(
            f"{len(bad):,} of its {count:,} samples fail their checksums or lie outside it"
        )
    return ShardReport("; ".join(problems), bad) if problems else None


def _header_count(buffer: Any) -> int | None:
    """The sample count in a header whose magic bytes and version are sound, else None."""
    if len(buffer) < HEADER.size:
        return None
    magic, version, _flags, count, _ = HEADER.unpack_from(buffer, 0)
    return count if magic == SHARD_MAGIC and version == FORMAT_VERSION else None


def examine(data: bytes, entry: dict[str, Any], name: str, check_hash: bool) -> ShardReport | None:
    """The damage in the uncompressed bytes of the shard an index entry describes: its size,
    checksum, sample count and every sample. None when the bytes are the entry's shard."""
    expected = int(entry["samples"])
    report = inspect_shard(data, name, expected)
    if report is not None:
        return report
    notes = []
    if len(data) != int(entry["raw_bytes"]):
        notes.append(f"it is {len(data):,} bytes, the index says {int(entry['raw_bytes']):,}")
    if check_hash and entry.get("raw_hash") and shard_hash(data) != entry["raw_hash"]:
        notes.append(f"its checksum is {shard_hash(data)}, the index says {entry['raw_hash']}")
    if not notes:
        return None
    return ShardReport(
        "; ".join(notes) + ", yet it is a sound shard whose samples pass their own checksums: it "
        "is not the file the index lists (swapped or replaced?)",
        None,
    )


def decompress(data: bytes, limit: int, name: str) -> tuple[bytes, str | None]:
    """A zstd-compressed shard's bytes, and None; or, when the frame is damaged, the part that
    decompresses (samples in it may still be intact) and what went wrong."""
    try:
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=limit), None
    except zstandard.ZstdError as error:
        problem = f"it cannot be decompressed ({error})"
    salvaged = bytearray()
    stream = zstandard.ZstdDecompressor().decompressobj()
    with contextlib.suppress(zstandard.ZstdError):
        for start in range(0, len(data), 1 << 14):
            salvaged += stream.decompress(data[start : start + (1 << 14)])
            if len(salvaged) > limit:
                break
    return bytes(salvaged[:limit]), problem


class ShardFile:
    """A memory-mapped shard: `get(i)` decodes sample `i`; `check(i)` verifies its checksum.

    `damaged`: the shard is known to be damaged and only its intact samples are read (a
    truncated file or one with extra bytes opens instead of being refused)."""

    def __init__(self, path: str, name: str, decoder: SampleDecoder, damaged: bool = False):
        self.path = path
        self.name = name
        self.decoder = decoder
        self._decode = decoder._decode
        with open(path, "rb") as file:
            self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        self._view = memoryview(self._map)
        self.count, offsets, hashes, self.layout = parse_shard_header(self._map, name)
        self._offsets = offsets.tolist()
        self._hashes = hashes.tolist()
        if self._offsets[-1] != len(self._map) and not damaged:
            raise DataError(
                f"Shard {name} is {len(self._map):,} bytes but its offsets table ends at "
                f"{self._offsets[-1]:,}: the file is truncated or corrupt."
            )

    def raw(self, i: int) -> memoryview:
        return self._view[self._offsets[i] : self._offsets[i + 1]]

    def get(self, i: int) -> dict[str, Any]:
        try:
            return self._decode(self._view[self._offsets[i] : self._offsets[i + 1]])
        except LayoutError as error:
            used, size = error.args
            raise DataError(
                f"Sample {i} of shard {self.name} is {size:,} bytes but its columns "
                f"{self.decoder.names} take {used:,}: the index lists other columns than the "
                "shard was written with (a damaged index, or one of another data set)."
            ) from None
        except Exception as error:  # damaged bytes that were not verified (verify=False)
            raise DataError(
                f"Sample {i} of shard {self.name} cannot be decoded as columns "
                f"{self.decoder.names} ({type(error).__name__}: {error}); the shard is damaged "
                "(read it with verify=True to find out which samples)."
            ) from None

    def check(self, i: int) -> bool:
        return sample_hash(self.raw(i)) == self._hashes[i]

    def close(self) -> None:
        # BufferError: a slice still references the map; the garbage collector closes it later
        with contextlib.suppress(BufferError):
            self._view.release()
            self._map.close()
