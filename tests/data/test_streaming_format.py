"""Shard format and writer: every column type round-trips, random access, atomic writes, errors."""

from __future__ import annotations

import json
import multiprocessing
import os

import numpy as np
import pytest
from streaming_support import fashion_samples, isolated_cache, shakespeare_tokens  # noqa: F401

from tessera.core.errors import DataError
from tessera.data.columns import parse_columns
from tessera.data.dataset import StreamingDataset
from tessera.data.format import INDEX_NAME, SampleDecoder
from tessera.data.reader import ShardFile
from tessera.data.writer import ShardWriter, merge_indexes

ALL_COLUMNS = {
    "raw": "bytes",
    "text": "str",
    "meta": "json",
    "label": "int",
    "score": "float",
    "small": "uint8",
    "pixels": "ndarray:uint8:28,28",
    "varshape": "ndarray:float32",
    "anyarray": "ndarray",
    "tokens": "tokens:uint16",
    "png": "image:png",
}


def _full_samples(count: int) -> list[dict]:
    from PIL import Image

    fashion = fashion_samples(count)
    tokens = shakespeare_tokens(32)
    samples = []
    for i, item in enumerate(fashion):
        pixels = np.frombuffer(item["image"], dtype=np.uint8).reshape(28, 28)
        samples.append(
            {
                "raw": item["image"],
                "text": "".join(chr(t) for t in tokens[i]),
                "meta": {"index": i, "tags": ["a", i % 3]},
                "label": item["label"] - 5,
                "score": i / 7,
                "small": i % 256,
                "pixels": pixels,
                "varshape": np.ones((i % 3 + 1, 2), dtype=np.float32) * i,
                "anyarray": np.arange(i % 5, dtype=np.int32),
                "tokens": tokens[i],
                "png": Image.fromarray(pixels),
            }
        )
    return samples


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_every_column_type_round_trips(tmp_path, compression):
    samples = _full_samples(60)
    with ShardWriter(str(tmp_path), ALL_COLUMNS, compression=compression, shard_size=20_000) as w:
        for sample in samples:
            w.write(sample)
    index = json.loads((tmp_path / INDEX_NAME).read_text())
    assert index["num_samples"] == 60 and len(index["shards"]) > 1
    dataset = StreamingDataset(local=str(tmp_path), shuffle=False, partitions=1)
    read = list(dataset)
    assert len(read) == 60
    for got, want in zip(read, samples):
        assert got["raw"] == want["raw"] and got["text"] == want["text"]
        assert got["meta"] == want["meta"] and got["label"] == want["label"]
        assert got["score"] == pytest.approx(want["score"]) and got["small"] == want["small"]
        np.testing.assert_array_equal(got["pixels"], want["pixels"])
        np.testing.assert_array_equal(got["varshape"], want["varshape"])
        assert got["anyarray"].dtype == np.int32
        np.testing.assert_array_equal(got["anyarray"], want["anyarray"])
        assert got["tokens"].dtype == np.uint16
        np.testing.assert_array_equal(got["tokens"], want["tokens"])
        np.testing.assert_array_equal(got["png"], want["pixels"])  # PNG is lossless


def test_random_access_reads_one_sample(tmp_path):
    samples = fashion_samples(500)
    with ShardWriter(str(tmp_path), {"image": "bytes", "label": "int", "id": "int"}) as writer:
        for sample in samples:
            writer.write(sample)
    index = json.loads((tmp_path / INDEX_NAME).read_text())
    decoder = SampleDecoder(parse_columns(index["columns"]))
    shard = ShardFile(str(tmp_path / index["shards"][0]["path"]), "s", decoder)
    for i in (0, 499, 250, 1):
        assert shard.get(i)["image"] == samples[i]["image"] and shard.get(i)["id"] == i
        assert shard.check(i)
    shard.close()


def test_writer_rejects_bad_input_naming_it(tmp_path):
    with pytest.raises(DataError, match=r"'weird'.*'complex128'.*Accepted column types"):
        ShardWriter(str(tmp_path / "a"), {"weird": "complex128"})
    missing = pytest.raises(DataError, match=r"Sample #1 has no value for column 'label'")
    with missing, ShardWriter(str(tmp_path / "b"), {"image": "bytes", "label": "int"}) as writer:
        writer.write({"image": b"x", "label": 1})
        writer.write({"image": b"y"})
    wrong = pytest.raises(DataError, match=r"column 'image' of type 'bytes': cannot encode")
    with wrong, ShardWriter(str(tmp_path / "c"), {"image": "bytes"}) as writer:
        writer.write({"image": 12})
    assert not (tmp_path / "b" / INDEX_NAME).exists()  # interrupted write: no index
    with pytest.raises(DataError, match=r"shard_size '12 parsecs' is not a size"):
        ShardWriter(str(tmp_path / "d"), {"x": "int"}, shard_size="12 parsecs")


def test_interrupted_write_never_leaves_an_index(tmp_path):
    out = tmp_path / "out"
    interrupted = pytest.raises(KeyboardInterrupt)
    with interrupted, ShardWriter(str(out), {"image": "bytes"}, shard_size=5000) as writer:
        for i, sample in enumerate(fashion_samples(100)):
            writer.write({"image": sample["image"]})
            if i == 50:
                raise KeyboardInterrupt
    assert not (out / INDEX_NAME).exists()
    assert not [p for p in os.listdir(out) if ".tmp" in p]  # no partial files
    with pytest.raises(DataError, match=r"index .*out/index.json does not exist"):
        StreamingDataset(local=str(out))


def test_existing_data_needs_overwrite_and_version_is_checked(tmp_path):
    with ShardWriter(str(tmp_path), {"x": "int"}) as writer:
        writer.write({"x": 1})
    with pytest.raises(DataError, match="already exists; pass overwrite=True"):
        ShardWriter(str(tmp_path), {"x": "int"})
    index = json.loads((tmp_path / INDEX_NAME).read_text())
    index["version"] = 99
    (tmp_path / INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(DataError, match=r"index.json has format version 99; this Tessera reads"):
        StreamingDataset(local=str(tmp_path))


def _write_part(args: tuple[str, int]) -> int:
    out, part = args
    columns = {"id": "int", "image": "bytes"}
    with ShardWriter(out, columns, part=f"part-{part}", shard_size=30_000) as w:
        for sample in fashion_samples(400)[part * 200 : (part + 1) * 200]:
            w.write({"id": sample["id"], "image": sample["image"]})
    return os.getpid()


def test_parallel_writers_merge_into_one_data_set(tmp_path):
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:
        pids = pool.map(_write_part, [(str(tmp_path), 0), (str(tmp_path), 1)])
    assert len(set(pids)) == 2  # really two processes
    index = merge_indexes(str(tmp_path))
    assert index["num_samples"] == 400
    ids = sorted(s["id"] for s in StreamingDataset(local=str(tmp_path), seed=3))
    assert ids == list(range(400))
