"""A generator of damaged shard data sets: every way a shard or an index can be broken on a
flaky disk or by a careless edit, each with what a reader must say about it.

`damages()` yields `Damage(name, compressed, apply, names, samples, lost)`: `apply(folder)`
breaks a freshly written data set of `COUNT` real samples in `SHARDS` shards; `names` is the
file the error must name (a shard, or index.json); `samples` the sample numbers (within the
shard) it must name, if any; `lost` how many samples `on_corrupt="skip"` may drop (None:
the damage is to the index and can never be skipped).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tessera.data.writer import ShardWriter

COUNT, SHARDS, PER_SHARD = 600, 3, 200
COLUMNS = {"id": "int", "tokens": "tokens:uint16", "text": "str"}
DAMAGED = 1  # the shard that is damaged: samples 200 to 399


def write_dataset(folder: Path, tokens: list[np.ndarray], compressed: bool) -> list[dict]:
    """COUNT samples of real text (token ids and the characters), 200 per shard."""
    samples = []
    for i in range(COUNT):
        row = tokens[i].astype(np.uint16)
        samples.append({"id": i, "tokens": row, "text": "".join(map(chr, row))})
    size = sum(8 + 2 * len(s["tokens"]) + len(s["text"]) + 8 for s in samples[:PER_SHARD])
    compression = "zstd" if compressed else None
    with ShardWriter(str(folder), COLUMNS, compression=compression, shard_size=size) as writer:
        for sample in samples:
            writer.write(sample)
    index = json.loads((folder / "index.json").read_text())
    assert [s["samples"] for s in index["shards"]] == [PER_SHARD] * SHARDS
    return samples


@dataclass
class Damage:
    name: str
    compressed: bool
    apply: Callable[[Path], None]
    names: str  # what the message must name: "shard" (the damaged shard's file) or "index"
    samples: tuple[int, ...] = ()
    lost: int | None = PER_SHARD


def _index(folder: Path) -> dict:
    return json.loads((folder / "index.json").read_text())


def _edit_index(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        index = _index(folder)
        change(index)
        (folder / "index.json").write_text(json.dumps(index))

    return apply


def _set_shard(key: str, value: object, shard: int = DAMAGED) -> Callable[[dict], None]:
    def change(index: dict) -> None:
        index["shards"][shard][key] = value

    return change


def _entry(
    name: str, change: Callable[[dict], object], compressed: bool = False, lost: int = PER_SHARD
) -> Damage:
    return Damage(name, compressed, _edit_index(change), "shard", lost=lost)


def _count(samples: int) -> Callable[[dict], None]:
    """The shard's count changed, and the total with it (an index consistent in itself)."""

    def change(index: dict) -> None:
        index["num_samples"] += samples - index["shards"][DAMAGED]["samples"]
        index["shards"][DAMAGED]["samples"] = samples

    return change


def _copy_from_first(key: str) -> Callable[[dict], None]:
    def change(index: dict) -> None:
        index["shards"][DAMAGED][key] = index["shards"][0][key]

    return change


def _shard_file(folder: Path, stored: bool) -> Path:
    entry = _index(folder)["shards"][DAMAGED]
    return folder / (entry.get("stored_path", entry["path"]) if stored else entry["path"])


def _rewrite_raw(folder: Path, change: Callable[[bytearray], bytes | bytearray]) -> None:
    """Damage the uncompressed shard bytes (recompressed, with valid zstd, when compressed)."""
    import zstandard

    entry = _index(folder)["shards"][DAMAGED]
    if entry.get("compression") == "zstd":
        path = folder / entry["stored_path"]
        raw = bytearray(zstandard.ZstdDecompressor().decompress(path.read_bytes()))
        path.write_bytes(zstandard.ZstdCompressor().compress(bytes(change(raw))))
    else:
        path = folder / entry["path"]
        path.write_bytes(bytes(change(bytearray(path.read_bytes()))))


def _flip(offset: int) -> Callable[[bytearray], bytearray]:
    def change(data: bytearray) -> bytearray:
        data[offset] ^= 0x5A
        return data

    return change


def _sample_offset(data: bytearray, sample: int) -> int:
    return int(np.frombuffer(bytes(data[16 + 8 * sample : 24 + 8 * sample]), "<u8")[0])


def _flip_samples(*samples: int) -> Callable[[bytearray], bytearray]:
    def change(data: bytearray) -> bytearray:
        for sample in samples:
            data[_sample_offset(data, sample) + 12] ^= 0x5A
        return data

    return change


def _raw(change: Callable[[bytearray], bytes | bytearray]) -> Callable[[Path], None]:
    return lambda folder: _rewrite_raw(folder, change)


def _stored(change: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        path = _shard_file(folder, stored=True)
        path.write_bytes(change(path.read_bytes()))

    return apply


def _swap(folder: Path) -> None:
    index = _index(folder)
    key = "stored_path" if index["shards"][0].get("stored_path") else "path"
    one, two = (folder / index["shards"][k][key] for k in (DAMAGED, DAMAGED + 1))
    first, second = one.read_bytes(), two.read_bytes()
    one.write_bytes(second)
    two.write_bytes(first)


def _shard_damages(compressed: bool) -> Iterator[Damage]:
    def damage(name: str, apply: Callable[[Path], None], *samples: int, lost: int = PER_SHARD):
        return Damage(name, compressed, apply, "shard", samples, lost)

    yield damage("truncated to nothing", _raw(lambda d: b""))
    yield damage("truncated inside the header", _raw(lambda d: d[:10]))
    yield damage("truncated inside the offsets table", _raw(lambda d: d[:100]))
    yield damage("truncated inside the samples", _raw(lambda d: d[: len(d) * 3 // 5]))
    yield damage("last byte missing", _raw(lambda d: d[:-1]))
    yield damage("bytes appended", _raw(lambda d: d + b"garbage"))
    yield damage("magic bytes flipped", _raw(_flip(1)))
    yield damage("format version flipped", _raw(_flip(4)))
    yield damage("sample count flipped", _raw(_flip(8)))
    yield damage("an offset flipped", _raw(lambda d: _flip(16 + 8 * 40 + 1)(d)))
    yield damage(
        "a sample checksum flipped", _raw(lambda d: _flip(16 + 8 * 201 + 4 * 5)(d)), 5, lost=1
    )
    yield damage(
        "a sample's bytes flipped", _raw(lambda d: _flip(_sample_offset(d, 17) + 9)(d)), 17, lost=1
    )
    yield damage("two samples' bytes flipped", _raw(_flip_samples(3, 150)), 3, 150, lost=2)
    yield damage("file deleted", lambda folder: _shard_file(folder, compressed).unlink())
    yield damage("swapped with the next shard", _swap, lost=2 * PER_SHARD)
    if compressed:
        yield damage(
            "zstd frame byte flipped", _stored(lambda d: d[:40] + bytes([d[40] ^ 0xFF]) + d[41:])
        )
        yield damage("zstd frame truncated", _stored(lambda d: d[: len(d) // 2]))
        yield damage("zstd frame replaced by noise", _stored(lambda d: zlib.compress(d)[: len(d)]))
        yield damage("zstd frame empty", _stored(lambda d: b""))


def _index_damages() -> Iterator[Damage]:
    def damage(name: str, change: Callable[[dict], object]) -> Damage:
        return Damage(name, False, _edit_index(change), "index", lost=None)

    def whole(name: str, text: str | bytes) -> Damage:
        data = text if isinstance(text, bytes) else text.encode()
        return Damage(
            name, False, lambda f: (f / "index.json").write_bytes(data), "index", lost=None
        )

    yield whole("not JSON", "{not json")
    yield whole("truncated JSON", '{"format": "tessera-shards", "version": 1, "shards": [')
    yield whole("a list", "[]")
    yield whole("null", "null")
    yield whole("not UTF-8", b"\xff\xfe{")
    yield damage("shards is null", lambda i: i.update(shards=None))
    yield damage("shards is an object", lambda i: i.update(shards={"0": i["shards"][0]}))
    yield damage("shards is a string", lambda i: i.update(shards="shard.00000.tshd"))
    yield damage("shards is empty", lambda i: i.update(shards=[]))
    yield damage("shards missing", lambda i: i.pop("shards"))
    yield damage("a shard entry is a list", lambda i: i["shards"].__setitem__(DAMAGED, [1, 2]))
    yield damage("a shard entry is null", lambda i: i["shards"].__setitem__(DAMAGED, None))
    for value in ("200", 1.5, -5, 0, True, None, 10**30, [200]):
        yield damage(f"samples is {value!r}", _set_shard("samples", value))
    # index entries that disagree with an intact shard: reported at the shard, skippable
    yield _entry("samples lower than the shard holds", _count(150), lost=150)
    yield _entry("samples higher than the shard holds", _count(250), lost=250)
    yield _entry("raw_bytes is another size", _set_shard("raw_bytes", 1000))
    yield _entry("raw_hash is another shard's", _copy_from_first("raw_hash"))
    yield damage("num_samples disagrees with the shards", lambda i: i.update(num_samples=500))
    yield damage("num_samples is a string", lambda i: i.update(num_samples="600"))
    for value in (5, None, "", "../outside.tshd", "/etc/passwd"):
        yield damage(f"path is {value!r}", _set_shard("path", value))
    yield damage("path missing", lambda i: i["shards"][DAMAGED].pop("path"))
    for value in ("x", -1, 1.5, 10, None):
        yield damage(f"raw_bytes is {value!r}", _set_shard("raw_bytes", value))
    yield damage("raw_hash is a number", _set_shard("raw_hash", 5))
    for value in (5, "gzip", ["zstd"]):
        yield damage(f"compression is {value!r}", _set_shard("compression", value))
    yield damage("columns: one missing", lambda i: i["columns"].pop("text"))
    yield damage("columns: one extra", lambda i: i["columns"].update(extra="str"))
    yield damage("columns: a type changed", lambda i: i["columns"].update(id="float"))
    yield damage("columns: same-size type", lambda i: i["columns"].update(tokens="tokens:int16"))
    renamed = {"ident": "int", "tokens": "tokens:uint16", "text": "str"}
    yield damage("columns: renamed", lambda i: i.update(columns=renamed))
    reordered = {"tokens": "tokens:uint16", "id": "int", "text": "str"}
    yield damage("columns: reordered", lambda i: i.update(columns=reordered))
    yield damage("columns: a list", lambda i: i.update(columns=list(i["columns"])))
    yield damage("columns: empty", lambda i: i.update(columns={}))
    yield damage("columns: a type is a number", lambda i: i["columns"].update(id=5))
    yield damage("columns: unknown type", lambda i: i["columns"].update(id="int128"))
    yield damage("columns missing", lambda i: i.pop("columns"))
    yield damage("format version is a string", lambda i: i.update(version="1"))
    yield damage("hash algorithm unknown", lambda i: i.update(hash="md5"))


def _compressed_index_damages() -> Iterator[Damage]:
    def damage(name: str, change: Callable[[dict], object]) -> Damage:
        return Damage(name, True, _edit_index(change), "index", lost=None)

    yield damage("stored_path missing", lambda i: i["shards"][DAMAGED].pop("stored_path"))
    yield damage("stored_path is a number", _set_shard("stored_path", 7))
    gone = _edit_index(_set_shard("stored_path", "gone.zst"))  # a missing file: skippable
    yield Damage("stored_path of a file that is not there", True, gone, "index", lost=PER_SHARD)
    # the decompressed shard still matches raw_hash: read, with a warning naming the shard
    yield _entry("stored_hash is another shard's", _copy_from_first("stored_hash"), True, lost=0)
    yield _entry(
        "compression removed from a compressed shard", _set_shard("compression", None), True
    )


def damages() -> Iterator[Damage]:
    for compressed in (False, True):
        yield from _shard_damages(compressed)
    yield from _index_damages()
    yield from _compressed_index_damages()
