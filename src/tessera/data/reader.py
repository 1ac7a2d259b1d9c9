"""Read samples from one raw shard file by index, without reading the rest of the shard."""

from __future__ import annotations

import contextlib
import itertools
import mmap
from typing import Any

from tessera.core.errors import DataError
from tessera.data.format import SampleDecoder, parse_shard_header, sample_hash


def find_bad_samples(buffer: Any, name: str) -> list[int] | None:
    """Indices (within the shard) of samples whose bytes fail their checksum; None when the
    shard's header or offsets table is itself unreadable (then no sample can be trusted)."""
    try:
        count, offsets, hashes = parse_shard_header(buffer, name)
    except DataError:
        return None
    ends = offsets.tolist()
    if ends[0] < 0 or ends[-1] != len(buffer) or any(a > b for a, b in itertools.pairwise(ends)):
        return None
    view = memoryview(buffer)
    return [i for i in range(count) if sample_hash(view[ends[i] : ends[i + 1]]) != int(hashes[i])]


class ShardFile:
    """A memory-mapped shard: `get(i)` decodes sample `i`; `check(i)` verifies its checksum."""

    def __init__(self, path: str, name: str, decoder: SampleDecoder):
        self.path = path
        self.name = name
        self.decoder = decoder
        self._decode = decoder._decode
        with open(path, "rb") as file:
            self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        self._view = memoryview(self._map)
        self.count, offsets, hashes = parse_shard_header(self._map, name)
        self._offsets = offsets.tolist()
        self._hashes = hashes.tolist()
        if self._offsets[-1] != len(self._map):
            raise DataError(
                f"Shard {name} is {len(self._map)} bytes but its offsets table ends at "
                f"{self._offsets[-1]}: the file is truncated or corrupt."
            )

    def raw(self, i: int) -> memoryview:
        return self._view[self._offsets[i] : self._offsets[i + 1]]

    def get(self, i: int) -> dict[str, Any]:
        return self._decode(self._view[self._offsets[i] : self._offsets[i + 1]])

    def check(self, i: int) -> bool:
        return sample_hash(self.raw(i)) == self._hashes[i]

    def close(self) -> None:
        # BufferError: a slice still references the map; the garbage collector closes it later
        with contextlib.suppress(BufferError):
            self._view.release()
            self._map.close()
