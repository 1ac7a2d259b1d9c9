"""From documents to training sequences: encode, split train/val, pack or pad, write.

`concat` packing joins documents with the end-of-text id into one stream (no padding wasted);
`pad` gives each document its own row of `seq_len + 1` tokens, so prompts and padding can be
left out of the loss (prompt-masked fine-tuning).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tessera.core.errors import DataError, UserError
from tessera.data.text.documents import Document
from tessera.data.text.token_file import TokenDataset, TokenFile, token_dtype, write_token_file
from tessera.data.text.tokenizers import Tokenizer

MODES = ("concat", "pad")


@dataclass
class EncodedDocument:
    tokens: list[int]
    prompt_length: int


def encode_documents(
    documents: Iterable[Document], tokenizer: Tokenizer, progress: bool = False
) -> list[EncodedDocument]:
    """Encode each document as prompt + text + end-of-text (when the tokenizer has one)."""
    encoded = []
    eos = [tokenizer.eos_id] if tokenizer.eos_id is not None else []
    with _progress(progress) as bar:
        task = bar.add_task("tokenizing", total=None) if bar else None
        for document in documents:
            prompt = tokenizer.encode(document.prompt) if document.prompt else []
            tokens = prompt + tokenizer.encode(document.text) + eos
            encoded.append(EncodedDocument(tokens, len(prompt)))
            if bar is not None:
                bar.advance(task, len(document.prompt) + len(document.text))
    return encoded


def _progress(enabled: bool) -> Any:
    import contextlib

    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} characters"),
        TimeElapsedColumn(),
    )


def split_documents(
    documents: list[EncodedDocument], val_fraction: float, seed: int = 0
) -> tuple[list[EncodedDocument], list[EncodedDocument]]:
    """Split whole documents into train/val; a single document is split by tokens instead
    (its last `val_fraction` of tokens become validation, like nanoGPT's 90/10 split)."""
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    if val_fraction == 0.0:
        return documents, []
    if len(documents) == 1:
        tokens = documents[0].tokens
        cut = int(len(tokens) * (1.0 - val_fraction))
        return [EncodedDocument(tokens[:cut], 0)], [EncodedDocument(tokens[cut:], 0)]
    chosen = np.random.default_rng(seed).random(len(documents)) < val_fraction
    if not chosen.any():
        chosen[-1] = True
    train = [d for d, v in zip(documents, chosen) if not v]
    val = [d for d, v in zip(documents, chosen) if v]
    return train, val


def pack_stream(documents: list[EncodedDocument]) -> np.ndarray:
    """All documents' tokens, back to back (each already ends with end-of-text)."""
    if not documents:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.asarray(d.tokens, dtype=np.int64) for d in documents])


def pad_rows(
    documents: list[EncodedDocument], seq_len: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One row of `seq_len + 1` tokens per document: (rows, lengths, prompt lengths, number
    of documents truncated to fit)."""
    width = seq_len + 1
    rows = np.full((len(documents), width), pad_id, dtype=np.int64)
    lengths = np.zeros(len(documents), dtype=np.int32)
    prompts = np.zeros(len(documents), dtype=np.int32)
    truncated = 0
    for i, document in enumerate(documents):
        tokens = document.tokens[:width]
        truncated += len(document.tokens) > width
        rows[i, : len(tokens)] = tokens
        lengths[i] = len(tokens)
        prompts[i] = min(document.prompt_length, len(tokens))
    return rows, lengths, prompts, truncated


def write_split(
    prefix: Path,
    documents: list[EncodedDocument],
    tokenizer: Tokenizer,
    seq_len: int,
    mode: str,
) -> dict[str, Any]:
    """Write one split under `prefix`; returns a summary (sequences, tokens, truncations)."""
    meta = {"vocab_size": tokenizer.vocab_size, "seq_len": seq_len, "eos_id": tokenizer.eos_id}
    meta["tokenizer"] = tokenizer.to_dict()
    if mode == "concat":
        stream = pack_stream(documents)
        if stream.size < seq_len + 1:
            raise DataError(
                f"{prefix.name}: only {stream.size} tokens, fewer than one sequence of "
                f"{seq_len + 1}; use a smaller --seq-len or more text."
            )
        write_token_file(prefix, stream, {**meta, "layout": "stream"})
        return {"sequences": (stream.size - 1) // seq_len, "tokens": int(stream.size)}
    if mode != "pad":
        raise UserError(f"packing mode {mode!r} is unknown; accepted: {', '.join(MODES)}.")
    pad_id = tokenizer.eos_id if tokenizer.eos_id is not None else 0
    rows, lengths, prompts, truncated = pad_rows(documents, seq_len, pad_id)
    write_token_file(prefix, rows, {**meta, "layout": "rows"}, lengths=lengths, prompts=prompts)
    return {"sequences": len(documents), "tokens": int(lengths.sum()), "truncated": truncated}


def sequence_dataset(
    documents: list[EncodedDocument],
    tokenizer: Tokenizer,
    seq_len: int,
    mode: str,
    stride: int | None = None,
) -> TokenDataset:
    """The documents as an in-memory `TokenDataset` of `seq_len + 1`-token sequences:
    packed into one stream (`concat`, windows `stride` apart) or one padded row each (`pad`)."""
    meta = {"vocab_size": tokenizer.vocab_size, "seq_len": seq_len}
    if mode == "concat":
        return TokenDataset(TokenFile.in_memory(pack_stream(documents), meta), stride=stride)
    pad_id = tokenizer.eos_id if tokenizer.eos_id is not None else 0
    rows, lengths, prompts, _ = pad_rows(documents, seq_len, pad_id)
    return TokenDataset(TokenFile.in_memory(rows, meta, lengths=lengths, prompts=prompts))


def write_split_shards(
    out: str, documents: list[EncodedDocument], tokenizer: Tokenizer, seq_len: int, mode: str
) -> dict[str, Any]:
    """Write one split as streaming shards (`tessera.data.ShardWriter`): one sample per
    sequence of `seq_len + 1` tokens, with `labels` (-100 = no loss) in pad mode."""
    from tessera.data.writer import ShardWriter

    dataset = sequence_dataset(documents, tokenizer, seq_len, mode)
    dtype = token_dtype(tokenizer.vocab_size)
    columns = {"input_ids": f"tokens:{'uint16' if dtype.itemsize == 2 else 'uint32'}"}
    if mode == "pad":
        columns["labels"] = "tokens:int32"
    with ShardWriter(out, columns, compression="zstd", overwrite=True) as writer:
        for index in range(len(dataset)):
            sample = dataset[index]
            row = {"input_ids": sample["input_ids"].numpy().astype(dtype)}
            if mode == "pad":
                row["labels"] = sample["labels"].numpy().astype(np.int32)
            writer.write(row)
    return {"sequences": len(dataset), "tokens": int(dataset.file.tokens.size)}


def tokenize_to_folder(
    documents: Iterable[Document],
    tokenizer: Tokenizer,
    out_dir: str | Path,
    seq_len: int,
    mode: str = "concat",
    val_fraction: float = 0.1,
    seed: int = 0,
    progress: bool = False,
    shards: bool = False,
) -> dict[str, dict[str, Any]]:
    """Tokenize documents into `out_dir/train.*`, `out_dir/val.*` and `tokenizer.json` (or,
    with `shards`, streaming shard sets `out_dir/train/` and `out_dir/val/`)."""
    if mode not in MODES:
        raise UserError(f"packing mode {mode!r} is unknown; accepted: {', '.join(MODES)}.")
    if seq_len < 1:
        raise UserError(f"seq_len must be at least 1, got {seq_len}.")
    encoded = encode_documents(documents, tokenizer, progress=progress)
    if not encoded:
        raise DataError("no documents found in the input files.")
    if mode == "pad" and len(encoded) == 1:
        raise DataError("pad mode needs many documents (JSONL records or --lines); got one.")
    train, val = split_documents(encoded, val_fraction, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if shards:
        summary = {"train": write_split_shards(str(out / "train"), train, tokenizer, seq_len, mode)}
        if val:
            summary["val"] = write_split_shards(str(out / "val"), val, tokenizer, seq_len, mode)
        tokenizer.save(out / "tokenizer.json")
        return summary
    summary = {"train": write_split(out / "train", train, tokenizer, seq_len, mode)}
    if val:
        summary["val"] = write_split(out / "val", val, tokenizer, seq_len, mode)
    tokenizer.save(out / "tokenizer.json")
    return summary
