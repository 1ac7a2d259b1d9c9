"""Tokenizers (round trips), packing boundaries, token files, the `text` data builder, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tessera.cli.main import main
from tessera.core.errors import DataError, UserError
from tessera.data.root import find_file
from tessera.data.text import (
    ByteTokenizer,
    CharTokenizer,
    Document,
    TokenDataset,
    load_tokenizer,
    read_documents,
    tokenize_to_folder,
    tokenizer_from_dict,
)

SHAKESPEARE = find_file("tinyshakespeare")


def test_char_tokenizer_round_trips_shakespeare() -> None:
    text = SHAKESPEARE.read_text(encoding="utf-8")
    tokenizer = load_tokenizer(f"char:{SHAKESPEARE}")
    assert tokenizer.vocab_size == 65
    ids = tokenizer.encode(text)
    assert len(ids) == len(text) and tokenizer.decode(ids) == text
    rebuilt = tokenizer_from_dict(json.loads(json.dumps(tokenizer.to_dict())))
    assert rebuilt.encode(text[:500]) == ids[:500]
    with pytest.raises(DataError, match="character '€' is not in this character tokenizer"):
        tokenizer.encode("price: €")


def test_byte_tokenizer_round_trips_any_text() -> None:
    text = "naïve café — 東京 🙂"
    tokenizer = ByteTokenizer()
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert max(tokenizer.encode(text)) < 256 and tokenizer.eos_id == 256


def test_bpe_tokenizer_trains_and_round_trips(tmp_path: Path) -> None:
    pytest.importorskip("tokenizers")
    sample = tmp_path / "sample.txt"
    sample.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:200_000], encoding="utf-8")
    out = tmp_path / "bpe.json"
    assert (
        main(["data", "tokenizer", "train", str(sample), "--out", str(out), "--vocab-size", "600"])
        == 0
    )
    tokenizer = load_tokenizer(str(out))
    assert tokenizer.vocab_size == 600
    text = SHAKESPEARE.read_text(encoding="utf-8")[300_000:302_000] + " naïve 東京"
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert len(ids) < 0.6 * len(text)  # merges learned: far fewer tokens than characters


def test_concat_packing_keeps_every_token_and_marks_boundaries(tmp_path: Path) -> None:
    tokenizer = CharTokenizer.train(["abcdefgh"], eos=True)
    documents = [Document("abc"), Document("defgh"), Document("ab")] * 4
    tokenize_to_folder(documents, tokenizer, tmp_path, seq_len=4, val_fraction=0.0)
    dataset = TokenDataset(tmp_path / "train")
    stream = [*tokenizer.encode("abc"), 8, *tokenizer.encode("defgh"), 8]
    stream += [*tokenizer.encode("ab"), 8]
    stream = stream * 4
    assert len(dataset) == (len(stream) - 1) // 4
    for index in range(len(dataset)):
        window = dataset[index]["input_ids"].tolist()
        assert len(window) == 5 and window == stream[index * 4 : index * 4 + 5]
    # Consecutive sequences overlap by one token, so every token is a target exactly once.
    assert dataset[0]["input_ids"][-1] == dataset[1]["input_ids"][0]
    # A stream file can be read at another sequence length.
    assert TokenDataset(tmp_path / "train", seq_len=8)[1]["input_ids"].tolist() == stream[8:17]


def test_window_stride_gives_overlapping_windows_that_cover_every_start(tmp_path: Path) -> None:
    text = SHAKESPEARE.read_text()[:2000]
    tokenizer = CharTokenizer.train([text])
    tokenize_to_folder([Document(text)], tokenizer, tmp_path, seq_len=64, val_fraction=0.0)
    stream = tokenizer.encode(text)
    dataset = TokenDataset(tmp_path / "train", seq_len=64, stride=16)
    assert len(dataset) == (len(stream) - 65) // 16 + 1
    for index in (0, 1, 7, len(dataset) - 1):
        assert dataset[index]["input_ids"].tolist() == stream[index * 16 : index * 16 + 65]
    every_start = TokenDataset(tmp_path / "train", seq_len=64, stride=1)
    assert len(every_start) == len(stream) - 64
    assert every_start[len(every_start) - 1]["input_ids"].tolist() == stream[-65:]
    with pytest.raises(DataError, match="window_stride must be at least 1"):
        TokenDataset(tmp_path / "train", seq_len=64, stride=0)


def test_window_stride_in_a_run_file_reaches_only_the_training_split() -> None:
    from tessera.data.registry import DataContext
    from tessera.data.text.registration import TextDataConfig, build_text

    options = {"text": str(SHAKESPEARE), "tokenizer": f"char:{SHAKESPEARE}", "seq_len": 128}
    context = DataContext(seed=0, rank=0, world_size=1)
    plain = build_text(TextDataConfig(**options, batch_size=8), context)
    strided = build_text(TextDataConfig(**options, batch_size=8, window_stride=1), context)
    tokens = strided.train.dataset.file.tokens.size
    assert len(plain.train.dataset) == (tokens - 1) // 128
    assert len(strided.train.dataset) == tokens - 128  # one window at every start
    assert torch.equal(strided.train.dataset[128]["input_ids"], plain.train.dataset[1]["input_ids"])
    assert len(strided.eval["eval"].dataset) == len(plain.eval["eval"].dataset)
    with pytest.raises(ValueError, match="window_stride' needs a concatenated token stream"):
        TextDataConfig(**options, packing="pad", window_stride=4)


def test_an_evaluation_subset_is_spread_over_the_whole_validation_split() -> None:
    from tessera.data.registry import DataContext
    from tessera.data.text.registration import TextDataConfig, build_text

    options = {"text": str(SHAKESPEARE), "tokenizer": f"char:{SHAKESPEARE}", "seq_len": 64}
    context = DataContext(seed=0, rank=0, world_size=1)
    whole = build_text(TextDataConfig(**options), context).eval["eval"].dataset
    subset = build_text(TextDataConfig(**options, eval_max_sequences=10), context)
    chosen = subset.eval["eval"].dataset
    assert len(chosen) == 10
    windows = [whole[i]["input_ids"] for i in range(len(whole))]
    positions = [
        next(i for i, w in enumerate(windows) if torch.equal(w, chosen[k]["input_ids"]))
        for k in range(10)
    ]
    assert positions == sorted(positions) and positions[0] == 0
    assert positions[-1] >= 0.85 * len(whole)  # the end of the split is scored, not only the start


def test_pad_packing_masks_prompts_and_padding(tmp_path: Path) -> None:
    records = [
        {"prompt": "Q:ab ", "response": "A:cd"},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
    ]
    source = tmp_path / "chat.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in records * 3), encoding="utf-8")
    documents = list(read_documents([source]))
    assert documents[1] == Document(text="yo\n", prompt="user: hi\nassistant: ")
    tokenizer = ByteTokenizer()
    tokenize_to_folder(
        documents, tokenizer, tmp_path / "out", seq_len=16, mode="pad", val_fraction=0.0
    )
    row = TokenDataset(tmp_path / "out" / "train")[0]
    ids, labels = row["input_ids"], row["labels"]
    assert ids.shape == (17,)
    full = [*tokenizer.encode("Q:ab A:cd"), 256]
    assert ids[: len(full)].tolist() == full
    scored = [i for i in range(17) if labels[i] != -100]
    assert scored == list(range(5, len(full)))  # the response and its end-of-text only
    assert labels[scored].tolist() == full[5:]
    truncated = TokenDataset(tmp_path / "out" / "train")[1]
    assert truncated["input_ids"].shape == (17,)


def test_token_files_refuse_truncation_and_wrong_lengths(tmp_path: Path) -> None:
    tokenizer = CharTokenizer.train(["abc"], eos=True)
    tokenize_to_folder([Document("abcabc" * 20)], tokenizer, tmp_path, seq_len=8)
    with pytest.raises(DataError, match="fewer than one sequence"):
        TokenDataset(tmp_path / "val", seq_len=100)
    binary = tmp_path / "train.bin"
    binary.write_bytes(binary.read_bytes()[:-2])
    with pytest.raises(DataError, match="truncated"):
        TokenDataset(tmp_path / "train")


def test_tokenize_command_writes_a_split_nanogpt_would(tmp_path: Path) -> None:
    out = tmp_path / "shakespeare"
    code = main(
        [
            "data",
            "tokenize",
            str(SHAKESPEARE),
            "--tokenizer",
            "char",
            "--out",
            str(out),
            "--seq-len",
            "256",
        ]
    )
    assert code == 0
    train, val = TokenDataset(out / "train"), TokenDataset(out / "val")
    # The same 90/10 cut as nanoGPT's prepare.py: 1,003,854 training characters.
    assert train.file.tokens.size == 1_003_854 and val.file.tokens.size == 111_540
    tokenizer = load_tokenizer(str(out / "tokenizer.json"))
    text = SHAKESPEARE.read_text(encoding="utf-8")
    assert tokenizer.decode(val[0]["input_ids"].tolist()) == text[1_003_854 : 1_003_854 + 257]
    assert isinstance(train[3]["input_ids"], torch.Tensor)
    assert np.array_equal(train.file.tokens[:5], tokenizer.encode(text[:5]))


def test_tokenize_command_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text field"}\n', encoding="utf-8")
    code = main(
        [
            "data",
            "tokenize",
            str(bad),
            "--tokenizer",
            "byte",
            "--out",
            str(tmp_path / "o"),
            "--seq-len",
            "4",
        ]
    )
    assert code == 2
    assert "bad.jsonl:2: no field 'text' (fields: body)" in capsys.readouterr().err
    with pytest.raises(UserError, match="no such file"):
        load_tokenizer(str(tmp_path / "missing.json"))


def test_tokenize_to_streaming_shards_matches_token_files(tmp_path: Path) -> None:
    common = [str(SHAKESPEARE), "--tokenizer", "char", "--seq-len", "64"]
    assert main(["data", "tokenize", *common, "--out", str(tmp_path / "files")]) == 0
    assert (
        main(["data", "tokenize", *common, "--out", str(tmp_path / "shards"), "--format", "shards"])
        == 0
    )
    from tessera.data.registry import DataContext
    from tessera.data.text.registration import TextDataConfig, build_text

    loaders = build_text(
        TextDataConfig(shards=str(tmp_path / "shards"), batch_size=32, eval_batch_size=32),
        DataContext(),
    )
    streamed = next(iter(loaders.eval["eval"]))["input_ids"]
    files = TokenDataset(tmp_path / "files" / "val")
    assert streamed.shape == (32, 65)
    assert torch.equal(streamed, torch.stack([files[i]["input_ids"] for i in range(32)]))
    train = next(iter(loaders.train))["input_ids"]
    assert train.shape == (32, 65) and train.dtype == torch.int64
