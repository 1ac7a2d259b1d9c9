"""`tessera data convert` / `tessera data inspect` on real data."""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import pytest
import torch
from streaming_support import FASHION, SHAKESPEARE, SHARED, isolated_cache  # noqa: F401

from tessera.cli.data import data_subparsers
from tessera.cli.main import main
from tessera.data.dataset import StreamingDataset
from tessera.data.fashion_mnist import read_idx


def test_convert_fashion_mnist_then_inspect_and_verify(tmp_path, capsys):
    out = tmp_path / "fm"
    code = main(
        [
            "data",
            "convert",
            "fashion-mnist",
            str(FASHION),
            str(out),
            "--split",
            "test",
            "--image-format",
            "raw",
            "--shard-size",
            "1MiB",
        ]
    )
    assert code == 0
    images = read_idx(FASHION / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")
    read = list(StreamingDataset(local=str(out), shuffle=False))
    assert len(read) == 10_000 and read[123]["label"] == labels[123]
    np.testing.assert_array_equal(read[9999]["image"], images[9999])
    capsys.readouterr()
    assert main(["data", "inspect", str(out), "--verify", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.split("verified")[0])
    assert summary["samples"] == 10_000 and summary["shards"] >= 7
    index = json.loads((out / "index.json").read_text())
    shard = out / index["shards"][3]["stored_path"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 1
    shard.write_bytes(bytes(data))
    assert main(["data", "inspect", str(out), "--verify"]) == 2
    assert "shard.00003.tshd.zst" in capsys.readouterr().err


def test_convert_jsonl_csv_and_text(tmp_path):
    assert (
        main(["data", "convert", "jsonl", str(SHARED / "eval" / "copa.jsonl"), str(tmp_path / "j")])
        == 0
    )
    first = json.loads((SHARED / "eval" / "copa.jsonl").read_text().splitlines()[0])
    rows = list(StreamingDataset(local=str(tmp_path / "j"), shuffle=False))
    assert rows[0] == first and len(rows) == 100
    (tmp_path / "t.csv").write_text("name,count,score\nada,3,1.5\nbob,4,2\n")
    assert main(["data", "convert", "csv", str(tmp_path / "t.csv"), str(tmp_path / "c")]) == 0
    rows = list(StreamingDataset(local=str(tmp_path / "c"), shuffle=False))
    assert rows == [
        {"name": "ada", "count": 3, "score": 1.5},
        {"name": "bob", "count": 4, "score": 2.0},
    ]
    assert main(["data", "convert", "text", str(SHAKESPEARE.parent), str(tmp_path / "t")]) == 0
    (text,) = list(StreamingDataset(local=str(tmp_path / "t")))
    assert text["text"] == SHAKESPEARE.read_text()


def test_bad_input_exits_2_naming_it(tmp_path, capsys):
    assert main(["data", "convert", "csv", str(tmp_path / "nope.csv"), str(tmp_path / "o")]) == 2
    assert "nope.csv does not exist" in capsys.readouterr().err
    assert main(["data", "inspect", str(tmp_path)]) == 2
    assert f"{tmp_path}/index.json does not exist" in capsys.readouterr().err


def test_other_modules_can_add_data_subcommands():
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    first = data_subparsers(subparsers)
    assert data_subparsers(subparsers) is first
    first.add_parser("tokenize").set_defaults(func=lambda args: 0)
    assert parser.parse_args(["data", "tokenize"]).func(None) == 0


def test_fashion_mnist_by_name_gets_enough_shards_and_writable_images(tmp_path, capsys):
    pytest.importorskip("PIL")
    out = tmp_path / "fm"
    assert (
        main(["data", "convert", "fashion-mnist", "fashion-mnist", str(out), "--split", "test"])
        == 0
    )
    index = json.loads((out / "index.json").read_text())
    assert index["num_samples"] == 10_000 and len(index["shards"]) >= 16  # 1 shard before
    dataset = StreamingDataset(local=str(out), batch_size=50)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=50)))
    assert batch["image"].shape == (50, 28, 28)
    assert not [w for w in caught if "not writable" in str(w.message)], caught
