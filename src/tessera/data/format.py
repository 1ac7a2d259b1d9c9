"""The on-disk shard format and the index file (documented in docs/data/format.md).

A shard holds a header, a table of sample offsets, a table of per-sample hashes, then the samples.
Each sample starts with a table of uint32 sizes, one per variable-size column, followed by the
column values in column order. Everything is little-endian. The offsets table gives random access
to any sample without reading the rest of the shard.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import xxhash

from tessera.core.errors import DataError
from tessera.data.columns import Column, parse_columns

FORMAT_NAME = "tessera-shards"
FORMAT_VERSION = 1
INDEX_NAME = "index.json"
SHARD_MAGIC = b"TSHD"
SHARD_SUFFIX = ".tshd"
HEADER = struct.Struct("<4sHHII")  # magic, version, flags, sample count, columns checksum
COMPRESSIONS = ("zstd",)


def shard_hash(data: bytes | memoryview) -> str:
    """The whole-file checksum stored in the index (xxh3-64, hex)."""
    return xxhash.xxh3_64_hexdigest(data)


def sample_hash(data: bytes | memoryview) -> int:
    """The per-sample checksum stored in the shard (xxh32)."""
    return xxhash.xxh32_intdigest(data)


def columns_hash(columns: list[Column]) -> int:
    """The checksum of a column layout (names, types, order) that each shard's header keeps, so
    a reader notices an index whose columns are not the ones the shard was written with. 0 in
    a header means none was recorded (shards written before it existed)."""
    text = json.dumps([[c.name, c.kind] for c in columns], separators=(",", ":"))
    return xxhash.xxh32_intdigest(text.encode("utf-8")) or 1


class LayoutError(ValueError):
    """A sample's bytes do not fit the columns it is decoded with (raised by the decoder)."""


def encode_sample(columns: list[Column], sample: Mapping[str, Any], where: str) -> bytes:
    """Encode one sample (a mapping with every column) to its bytes."""
    sizes: list[int] = []
    parts: list[bytes] = []
    for column in columns:
        if column.name not in sample:
            raise DataError(
                f"Sample {where} has no value for column {column.name!r}; every sample must have "
                f"all columns: {', '.join(c.name for c in columns)} (it has "
                f"{', '.join(map(str, sample)) or 'none'})."
            )
        try:
            data = column.encode(sample[column.name])
        except (TypeError, ValueError, OverflowError) as error:
            raise DataError(
                f"Sample {where}, column {column.name!r} of type {column.kind!r}: cannot encode "
                f"the value {_short(sample[column.name])} ({error})."
            ) from None
        if column.size is None:
            sizes.append(len(data))
        elif len(data) != column.size:
            raise DataError(
                f"Sample {where}, column {column.name!r}: encoded to {len(data)} bytes, expected "
                f"{column.size} for type {column.kind!r}."
            )
        parts.append(data)
    return struct.pack(f"<{len(sizes)}I", *sizes) + b"".join(parts)


class SampleDecoder:
    """Turns the bytes of one sample back into a dict of column values.

    The decoding function is generated once per column layout (straight-line code, no loop over
    columns): reading is the hot path of every training step.
    """

    def __init__(self, columns: list[Column], decode_images: bool = True):
        self._spec = ({c.name: c.kind for c in columns}, decode_images)
        self.names = [c.name for c in columns]
        decoders = [
            bytes if c.kind.startswith("image") and not decode_images else c.decode for c in columns
        ]
        variable = [i for i, c in enumerate(columns) if c.size is None]
        table = struct.Struct(f"<{len(variable)}I")
        lines = ["def decode(view):"]
        if variable:
            names = ", ".join(f"s{i}" for i in variable)
            lines.append(f"    {names}, = unpack_table(view, 0)")
        lines.append(f"    p = {table.size}")
        values = []
        for i, column in enumerate(columns):
            size = f"s{i}" if column.size is None else str(column.size)
            lines.append(f"    v{i} = d{i}(view[p : p + {size}]); p += {size}")
            values.append(f"{column.name!r}: v{i}")
        lines.append("    if p != len(view):")  # other columns than the sample was written with
        lines.append("        raise layout_error(p, len(view))")
        lines.append("    return {" + ", ".join(values) + "}")
        scope: dict[str, Any] = {f"d{i}": d for i, d in enumerate(decoders)}
        scope["unpack_table"] = table.unpack_from
        scope["layout_error"] = LayoutError
        exec("\n".join(lines), scope)  # the code is built above from column positions only
        self._decode = scope["decode"]

    def __call__(self, view: memoryview) -> dict[str, Any]:
        return self._decode(view)

    def __reduce__(self) -> tuple[Any, ...]:  # generated code does not pickle: rebuild it
        return _decoder_from_spec, self._spec


def _decoder_from_spec(columns: dict[str, str], decode_images: bool) -> SampleDecoder:
    return SampleDecoder(parse_columns(columns), decode_images)


def build_shard(samples: list[bytes], layout: int = 0) -> bytes:
    """The bytes of one shard holding the given encoded samples; `layout` is the
    `columns_hash` of their columns."""
    count = len(samples)
    start = HEADER.size + 8 * (count + 1) + 4 * count
    lengths = np.fromiter((len(s) for s in samples), dtype=np.uint64, count=count)
    offsets = np.empty(count + 1, dtype="<u8")
    offsets[0] = start
    np.cumsum(lengths, out=offsets[1:])
    offsets[1:] += start
    hashes = np.fromiter((sample_hash(s) for s in samples), dtype="<u4", count=count)
    header = HEADER.pack(SHARD_MAGIC, FORMAT_VERSION, 0, count, layout)
    return b"".join([header, offsets.tobytes(), hashes.tobytes(), *samples])


def parse_shard_header(buffer: Any, name: str) -> tuple[int, np.ndarray, np.ndarray, int]:
    """(sample count, offsets, per-sample hashes, columns checksum) of a shard in `buffer`."""
    if len(buffer) < HEADER.size:
        raise DataError(
            f"Shard {name} is truncated: {len(buffer):,} bytes, shorter than its "
            f"{HEADER.size}-byte header."
        )
    magic, version, _flags, count, layout = HEADER.unpack_from(buffer, 0)
    if magic != SHARD_MAGIC:
        raise DataError(f"Shard {name} is not a Tessera shard (bad magic bytes {magic!r}).")
    if version != FORMAT_VERSION:
        raise DataError(
            f"Shard {name} has format version {version}; this Tessera reads version "
            f"{FORMAT_VERSION}. Rewrite the data set with this version's `tessera data convert`."
        )
    table_end = HEADER.size + 8 * (count + 1) + 4 * count
    if len(buffer) < table_end:
        raise DataError(
            f"Shard {name} is truncated inside its offsets table: {len(buffer):,} bytes, the "
            f"table of its {count:,} samples ends at byte {table_end:,}."
        )
    offsets = np.frombuffer(buffer, dtype="<u8", count=count + 1, offset=HEADER.size)
    hashes = np.frombuffer(buffer, dtype="<u4", count=count, offset=HEADER.size + 8 * (count + 1))
    return count, offsets, hashes, layout


def make_index(columns: list[Column], shards: list[dict[str, Any]]) -> dict[str, Any]:
    """An index document for the given shard entries."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "columns": {c.name: c.kind for c in columns},
        "num_samples": sum(s["samples"] for s in shards),
        "hash": "xxh3_64",
        "shards": shards,
    }


def dump_index(index: dict[str, Any]) -> bytes:
    return (json.dumps(index, indent=1) + "\n").encode("utf-8")


def load_index(data: bytes, where: str) -> dict[str, Any]:
    """Parse and check an index file's bytes; `where` names it in errors. A damaged index is a
    DataError naming the file and the entry (tessera.data.index_check)."""
    from tessera.data.index_check import check_index

    try:
        index = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"Index {where} is not valid JSON ({error}).") from None
    return check_index(index, where)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
