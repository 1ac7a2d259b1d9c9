"""Every way a shard or an index can be damaged (tests/data/corruption_support.py generates
them), read three ways: each read names the damaged file (and the samples) in a DataError, or
with on_corrupt="skip" returns only intact samples and says exactly how many it skipped;
`tessera data inspect --verify` exits 2 naming the file. Never silent, never a traceback."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import torch
from corruption_support import COUNT, DAMAGED, PER_SHARD, damages, write_dataset
from streaming_support import SHAKESPEARE, isolated_cache, shakespeare_tokens  # noqa: F401

from tessera.cli.main import main
from tessera.core.errors import DataError
from tessera.data.dataset import StreamingDataset

DAMAGES = list(damages())
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """One good data set per compression, copied for each damage."""
    tokens = shakespeare_tokens(32)
    folders, samples = {}, None
    for compressed in (False, True):
        folder = tmp_path_factory.mktemp("pristine") / ("zstd" if compressed else "raw")
        samples = write_dataset(folder, tokens, compressed)
        folders[compressed] = folder
    return folders, {s["id"]: s for s in samples}


def _same(sample: dict, original: dict) -> bool:
    return (
        sample["text"] == original["text"]
        and sample["tokens"].tolist() == original["tokens"].tolist()
    )


def _skipped(text: str) -> int:
    return sum(int(n.replace(",", "")) for n in re.findall(r"Skipping ([\d,]+) of its", text))


@pytest.mark.parametrize(
    "damage", DAMAGES, ids=[f"{'zstd' if d.compressed else 'raw'}: {d.name}" for d in DAMAGES]
)
def test_damaged_data_is_named_or_skipped_aloud(damage, pristine, tmp_path, caplog, capsys):
    folders, originals = pristine
    folder = tmp_path / "data"
    shutil.copytree(folders[damage.compressed], folder)
    damage.apply(folder)
    named = "index.json" if damage.names == "index" else f"shard.{DAMAGED:05d}.tshd"

    if damage.lost == 0:  # the data is intact: it is read, and the oddity is said aloud
        with caplog.at_level(logging.WARNING):
            read = list(StreamingDataset(local=str(folder), shuffle=False))
        assert len(read) == COUNT and all(_same(s, originals[s["id"]]) for s in read)
        assert named in caplog.text
    else:
        with pytest.raises(DataError) as caught:
            list(StreamingDataset(local=str(folder), shuffle=False))
        message = str(caught.value)
        assert named in message, message
        for sample in damage.samples:
            assert f"{sample} (global index {DAMAGED * PER_SHARD + sample})" in message, message

    if damage.lost is None:  # a damaged index is never skipped
        with pytest.raises(DataError, match=r"index\.json"):
            list(StreamingDataset(local=str(folder), shuffle=False, on_corrupt="skip"))
    elif damage.lost:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            dataset = StreamingDataset(local=str(folder), shuffle=False, on_corrupt="skip")
            read = list(dataset)
        assert all(_same(s, originals[s["id"]]) for s in read)  # only intact samples
        assert len({s["id"] for s in read}) == len(read)
        skipped = _skipped(caplog.text)
        assert 0 <= skipped <= damage.lost and named in caplog.text, caplog.text
        assert len(read) + skipped == dataset.num_samples, caplog.text  # said exactly

    capsys.readouterr()
    assert main(["data", "inspect", str(folder), "--verify"]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error and (named in error or "gone.zst" in error), error


def test_errors_in_dataloader_workers_reach_the_user_as_one_paragraph(pristine, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(pristine[0][True], folder)
    bad = next(d for d in DAMAGES if d.compressed and d.name == "a sample's bytes flipped")
    bad.apply(folder)
    dataset = StreamingDataset(local=str(folder), shuffle=False, batch_size=50)
    loader = torch.utils.data.DataLoader(dataset, batch_size=50, num_workers=2)
    with pytest.raises(DataError) as caught:
        list(loader)
    message = str(caught.value)
    assert "Traceback" not in message and "\n" not in message, message
    assert "shard.00001.tshd" in message and "17 (global index 217)" in message
    assert message.endswith("(raised in DataLoader worker process 0)")


def _token_shards(tmp_path: Path) -> Path:
    text = tmp_path / "text.txt"
    text.write_bytes(SHAKESPEARE.read_bytes()[:20_000])
    tokens = tmp_path / "tokens"
    args = ["--out", str(tokens), "--tokenizer", "char", "--seq-len", "32", "--format", "shards"]
    assert main(["data", "tokenize", str(text), *args]) == 0
    return tokens


def _train(tmp_path: Path, tokens: Path, *overrides: str) -> int:
    return main(
        [
            "train",
            str(RECIPES / "shakespeare-char.yaml"),
            f"run_dir={tmp_path}",
            "data.text=null",
            "data.tokenizer=null",
            "data.seq_len=null",
            f"data.shards={tokens}",
            f"model.tokenizer={tokens / 'tokenizer.json'}",
            "model.n_layer=1",
            "model.d_model=16",
            "model.n_head=2",
            "model.max_seq_len=32",
            "max_duration=2ba",
            "loggers={}",
            "callbacks={}",
            *overrides,
        ]
    )


@pytest.mark.parametrize("workers", [0, 1])
def test_train_on_a_damaged_token_shard_exits_2_naming_it(tmp_path, capsys, workers):
    tokens = _token_shards(tmp_path)
    shard = tokens / "train" / "shard.00000.tshd.zst"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    capsys.readouterr()
    code = _train(tmp_path, tokens, f"data.num_workers={workers}")
    error = capsys.readouterr().err
    assert code == 2, error
    assert "Traceback" not in error and "shard.00000.tshd.zst is corrupt" in error, error
    assert "data.on_corrupt=skip" in error


def test_train_with_on_corrupt_skip_skips_the_damaged_samples_aloud(tmp_path, caplog):
    import zstandard

    tokens = _token_shards(tmp_path)
    shard = tokens / "train" / "shard.00000.tshd.zst"
    raw = bytearray(zstandard.ZstdDecompressor().decompress(shard.read_bytes()))
    raw[-5] ^= 0x5A  # a byte of the last sample
    shard.write_bytes(zstandard.ZstdCompressor().compress(bytes(raw)))
    with caplog.at_level(logging.WARNING):
        assert _train(tmp_path, tokens, "data.on_corrupt=skip") == 0
    assert "shard.00000.tshd.zst is corrupt" in caplog.text and _skipped(caplog.text) == 1


def test_a_shard_repaired_at_its_source_is_read_again(pristine, tmp_path, caplog):
    folder = tmp_path / "data"
    shutil.copytree(pristine[0][True], folder)
    shard = folder / f"shard.{DAMAGED:05d}.tshd.zst"
    good = shard.read_bytes()
    next(d for d in DAMAGES if d.compressed and d.name == "truncated inside the samples").apply(
        folder
    )
    with caplog.at_level(logging.WARNING):
        read = list(StreamingDataset(local=str(folder), shuffle=False, on_corrupt="skip"))
    assert PER_SHARD < len(read) < COUNT and _skipped(caplog.text) == COUNT - len(read)
    (copy,) = (tmp_path / "home-cache").rglob("*.corrupt")  # what the other processes reuse
    shard.write_bytes(good)  # re-uploaded; a run some time later reads every sample again
    os.utime(copy, (time.time() - 3600, time.time() - 3600))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        read = list(StreamingDataset(local=str(folder), shuffle=False, on_corrupt="skip"))
    assert len(read) == COUNT and "corrupt" not in caplog.text, caplog.text
