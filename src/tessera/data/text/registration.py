"""Registers token data for recipes: `data: {name: text, text: FILE, tokenizer: SPEC, ...}`.

One of `path` (a folder written by `tessera data tokenize`, with train.* and val.*), `shards`
(`tessera data tokenize --format shards`: streaming shards, local or remote, read through
`StreamingDataset`; a list of them, each with a proportion, repeat or choose, mixes several
data sets) or `text` (raw text/JSONL files, tokenized in memory at start-up: fine for corpora
of a few hundred MB).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import ConfigDict, Field, model_validator

from tessera.core.component import ComponentConfig
from tessera.core.errors import DataError
from tessera.core.registry import builder
from tessera.data.registry import DataContext, DataLoaders, per_rank_batch_size
from tessera.data.root import resolve
from tessera.data.sampler import make_dataloader
from tessera.data.text.documents import read_documents
from tessera.data.text.encoding_cache import cached_encoding
from tessera.data.text.loaders import text_loaders
from tessera.data.text.packing import (
    EncodedDocument,
    encode_documents,
    sequence_dataset,
    split_documents,
)
from tessera.data.text.token_file import TokenDataset
from tessera.data.text.tokenizers import load_tokenizer


class ShardMix(ComponentConfig):
    """One data set of a mix (`shards: [{path: A, proportion: 0.7}, {path: B, ...}]`)."""

    path: str = Field(description="folder/URL from `tessera data tokenize --format shards`")
    proportion: float | None = Field(None, ge=0, description="share of each epoch")
    repeat: float | None = Field(None, ge=0, description="multiple of its own size per epoch")
    choose: int | None = Field(None, ge=0, description="samples per epoch")


class TextDataConfig(ComponentConfig):
    """Packed token sequences for language-model training."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"path": "tokens/"}]})

    name: str = "text"
    path: str | None = Field(None, description="folder from `tessera data tokenize`")
    shards: str | list[ShardMix] | None = Field(
        None,
        description="folder/URL from `tessera data tokenize --format shards` (streamed), or a "
        "list of them with their shares to mix",
    )
    cache: str | None = Field(None, description="local cache folder when `shards` is remote")
    on_corrupt: Literal["fail", "skip"] = Field(
        "fail",
        description="a damaged shard (`shards`): stop naming it, or skip the samples it lost "
        "(each skip is said aloud)",
    )
    text: list[str] | str | None = Field(
        None, description="raw text/JSONL file(s), or bundled data set names (tinyshakespeare)"
    )
    tokenizer: str | None = Field(None, description="tokenizer spec/file (with `text`)")
    text_field: str = Field("text", description="JSONL field holding the text")
    prompt_field: str | None = Field(None, description="JSONL field of the prompt (no loss)")
    response_field: str | None = Field(None, description="JSONL field of the response")
    packing: Literal["concat", "pad"] = Field(
        "concat", description="concat documents, or pad one per row (prompt-masked loss)"
    )
    seq_len: int | None = Field(None, ge=1, description="tokens the model reads per sequence")
    window_stride: int | None = Field(
        None,
        ge=1,
        description="tokens between the starts of consecutive training sequences (default "
        "seq_len: back to back; smaller: overlapping windows, 1: every start position)",
    )
    val_fraction: float = Field(0.1, ge=0, lt=1, description="held out for validation (text)")
    batch_size: int = Field(64, ge=1, description="global training batch size (sequences)")
    eval_batch_size: int = Field(64, ge=1, description="evaluation batch size per process")
    eval_max_sequences: int | None = Field(
        None,
        ge=1,
        description="evaluate on N windows spread evenly over the validation split (its start "
        "alone can be easier or harder than the whole: 0.09 nats on Tiny Shakespeare)",
    )
    num_workers: int = Field(0, ge=0, description="dataloader worker processes")
    shuffle: bool = True
    drop_last: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> TextDataConfig:
        if sum(x is not None for x in (self.path, self.text, self.shards)) != 1:
            raise ValueError(
                "give exactly one of 'path' (token files), 'shards' (streaming shards) or "
                "'text' (raw files)"
            )
        if self.text is not None and self.tokenizer is None:
            raise ValueError("'text' needs 'tokenizer' (e.g. 'char:FILE', 'byte', a JSON file)")
        if self.text is not None and self.seq_len is None:
            raise ValueError("'text' needs 'seq_len'")
        if self.window_stride is not None and (self.shards is not None or self.packing == "pad"):
            raise ValueError(
                "'window_stride' needs a concatenated token stream ('text' or 'path' with "
                "packing 'concat'); streaming shards and padded rows hold fixed sequences"
            )
        return self


def _datasets(config: TextDataConfig) -> tuple[TokenDataset, TokenDataset | None]:
    if config.path is not None:
        folder = Path(config.path)
        if not (folder / "train.json").is_file():
            raise DataError(
                f"data.path: {str(folder)!r} has no train.json; write it with "
                "`tessera data tokenize INPUT --out FOLDER`."
            )
        train = TokenDataset(folder / "train", config.seq_len, config.window_stride)
        val = (
            TokenDataset(folder / "val", config.seq_len)
            if (folder / "val.json").is_file()
            else None
        )
        return train, val
    given = [config.text] if isinstance(config.text, str) else list(config.text or [])
    files = [resolve(name, "data.text") for name in given]  # a path, or a bundled set's name
    tokenizer = load_tokenizer(str(config.tokenizer))
    fields = {
        "text_field": config.text_field,
        "prompt_field": config.prompt_field,
        "response_field": config.response_field,
    }

    def encode() -> list[EncodedDocument]:
        return encode_documents(read_documents(files, **fields), tokenizer)

    for name in files:  # the reader's own error for a missing file, before any hashing
        if not Path(name).is_file():
            raise DataError(f"input {name!r} does not exist or is not a file.")
    encoded = cached_encoding(files, tokenizer.to_dict(), encode, **fields)
    train_docs, val_docs = split_documents(encoded, config.val_fraction)
    seq_len, mode = int(config.seq_len), config.packing
    train = sequence_dataset(train_docs, tokenizer, seq_len, mode, config.window_stride)
    val = sequence_dataset(val_docs, tokenizer, seq_len, mode) if val_docs else None
    return train, val


def _as_tensors(sample: dict) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(value.astype(np.int64)) for key, value in sample.items()}


def _build_shards(config: TextDataConfig, context: DataContext) -> DataLoaders:
    from tessera.data.dataset import StreamingDataset
    from tessera.data.streams import Stream

    batch = per_rank_batch_size(config.batch_size, context)
    mix = [ShardMix(path=config.shards)] if isinstance(config.shards, str) else config.shards
    assert mix is not None

    def streams(split: str, shares: bool) -> list[Stream]:
        chosen = []
        for number, entry in enumerate(mix):
            remote = "://" in entry.path
            if not remote and split == "val" and not (Path(entry.path) / "val").is_dir():
                continue
            cache = (
                config.cache if len(mix) == 1 or not config.cache else f"{config.cache}/{number}"
            )
            where = {"remote": entry.path, "local": cache} if remote else {"local": entry.path}
            share = {k: getattr(entry, k) for k in ("proportion", "repeat", "choose")}
            chosen.append(Stream(**where, split=split, **(share if shares else {})))
        return chosen

    def stream(split: str, shuffle: bool, batch_size: int) -> StreamingDataset:
        return StreamingDataset(
            streams=streams(split, shares=split == "train"),
            shuffle=shuffle,
            seed=context.seed,
            batch_size=batch_size,
            transform=_as_tensors,
            on_corrupt=config.on_corrupt,
            rank=context.rank,
            world_size=context.world_size,
        )

    train = stream("train", config.shuffle, batch)
    loaders = DataLoaders(
        train=make_dataloader(
            train,
            batch,
            seed=context.seed,
            num_workers=config.num_workers,
            drop_last=config.drop_last,
        )
    )
    if streams("val", shares=False):
        val = stream("val", False, config.eval_batch_size)
        loaders.eval["eval"] = make_dataloader(
            val, config.eval_batch_size, seed=context.seed, num_workers=config.num_workers
        )
    return loaders


@builder(TextDataConfig)
def build_text(config: TextDataConfig, context: DataContext) -> DataLoaders:
    if config.shards is not None:
        return _build_shards(config, context)
    train, val = _datasets(config)
    limit = config.eval_max_sequences
    if val is not None and limit is not None and limit < len(val):
        from torch.utils.data import Subset

        val = Subset(val, [index * len(val) // limit for index in range(limit)])
    items = f"training sequences of {train.seq_len + 1} tokens"
    return text_loaders(config, context, train, val, items, "lower batch_size or seq_len")
