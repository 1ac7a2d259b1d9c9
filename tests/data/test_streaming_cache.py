"""Corrupt shards are named down to the sample and can be skipped; the cache limit evicts and
refuses impossible limits; a full disk is reported naming the folder."""

from __future__ import annotations

import json
import os
import shutil
from collections import namedtuple

import pytest
from streaming_support import fashion_samples, isolated_cache  # noqa: F401

from tessera.core.errors import DataError
from tessera.data.dataset import StreamingDataset
from tessera.data.format import INDEX_NAME
from tessera.data.writer import ShardWriter

COUNT = 1000


def _write(out, compression=None):
    with ShardWriter(
        str(out),
        {"image": "bytes", "label": "int", "id": "int"},
        compression=compression,
        shard_size=80_000,
    ) as w:
        for sample in fashion_samples(COUNT):
            w.write(sample)
    return json.loads((out / INDEX_NAME).read_text())


def _flip_byte_in_sample(root, index, shard_number, sample):
    """Flip one byte inside sample `sample` of a raw (uncompressed) shard."""
    import numpy as np

    path = root / index["shards"][shard_number]["path"]
    data = bytearray(path.read_bytes())
    count = index["shards"][shard_number]["samples"]
    offsets = np.frombuffer(bytes(data[16 : 16 + 8 * (count + 1)]), dtype="<u8")
    data[int(offsets[sample]) + 20] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_byte_names_the_shard_and_sample(tmp_path):
    index = _write(tmp_path / "remote")
    _flip_byte_in_sample(tmp_path / "remote", index, 2, 17)
    first = sum(s["samples"] for s in index["shards"][:2])
    remote, cache = str(tmp_path / "remote"), str(tmp_path / "cache")
    with pytest.raises(
        DataError,
        match=rf"shard\.00002\.tshd is corrupt.*samples 17 \(global index {first + 17}\) cannot",
    ):
        list(StreamingDataset(remote, cache, shuffle=False))
    assert not [n for n in os.listdir(cache) if n.endswith(".tshd")] or all(
        "00002" not in n for n in os.listdir(cache)
    )  # the corrupt shard never becomes a valid cache file
    skipped = [s["id"] for s in StreamingDataset(remote, cache, shuffle=False, on_corrupt="skip")]
    assert sorted(skipped) == [i for i in range(COUNT) if i != first + 17]
    with pytest.raises(DataError, match=r"shard\.00002\.tshd is corrupt"):  # read in place too
        list(StreamingDataset(local=remote))


def test_corrupt_compressed_shard_is_reported(tmp_path):
    index = _write(tmp_path / "remote", compression="zstd")
    path = tmp_path / "remote" / index["shards"][1]["stored_path"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"shard\.00001\.tshd\.zst is corrupt"):
        list(StreamingDataset(str(tmp_path / "remote"), str(tmp_path / "cache")))


def test_damage_in_the_cache_is_caught_when_reading_samples(tmp_path):
    index = _write(tmp_path / "remote")
    cache = tmp_path / "cache"
    list(StreamingDataset(str(tmp_path / "remote"), str(cache)))  # fill the cache
    cached = sorted(n for n in os.listdir(cache) if n.startswith("shard.00000"))[0]
    _flip_byte_in_sample(
        cache.parent, {"shards": [dict(index["shards"][0], path=f"cache/{cached}")]}, 0, 5
    )
    dataset = StreamingDataset(str(tmp_path / "remote"), str(cache), verify_samples=True)
    with pytest.raises(
        DataError, match=r"shard\.00000\.tshd is corrupt.*samples 5 \(global index 5\)"
    ):
        list(dataset)


def test_cache_limit_evicts_and_rejects_limits_below_a_shard(tmp_path):
    index = _write(tmp_path / "remote")
    largest = max(s["raw_bytes"] for s in index["shards"])
    with pytest.raises(
        DataError, match=r"cache limit 1,000 bytes is smaller than the largest shard"
    ):
        StreamingDataset(str(tmp_path / "remote"), str(tmp_path / "c"), cache_limit=1000)
    limit = 3 * largest
    dataset = StreamingDataset(
        str(tmp_path / "remote"), str(tmp_path / "c"), cache_limit=limit, partitions=2, prefetch=0
    )
    ids = [s["id"] for s in dataset]
    assert sorted(ids) == list(range(COUNT))
    used = sum(e.stat().st_size for e in os.scandir(tmp_path / "c") if e.name.endswith(".tshd"))
    assert 0 < used <= limit and len(index["shards"]) > 6  # most shards were evicted


def test_full_cache_disk_is_reported_naming_the_folder(tmp_path, monkeypatch):
    _write(tmp_path / "remote")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 100, 100))
    cache = str(tmp_path / "cache")
    with pytest.raises(DataError, match=rf"cache folder {cache} has 100 bytes free"):
        list(StreamingDataset(str(tmp_path / "remote"), cache))
