"""Registers chat fine-tuning data for recipes: `data: {name: chat, path: chats.jsonl, ...}`.

Conversations (`messages` JSONL) are rendered with the model's chat template (or the default),
scored on the assistant's turns only, and packed several to a row with per-conversation
attention masks (`packing: true`, the default) or given one padded row each.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from pydantic import Field

from tessera.core.component import ComponentConfig
from tessera.core.errors import DataError
from tessera.core.registry import builder
from tessera.data.registry import DataContext, DataLoaders
from tessera.data.text.chat import (
    FROM_MODEL,
    ChatEncoder,
    check_messages,
    read_jsonl,
    tokenizer_and_template,
)
from tessera.data.text.loaders import text_loaders
from tessera.data.text.packed import PackedChats, truncate

log = logging.getLogger(__name__)


class ChatDataConfig(ComponentConfig):
    """Chat conversations for supervised fine-tuning."""

    name: str = "chat"
    path: list[str] | str = Field(
        description="JSONL file(s), one conversation per line", examples=["chats.jsonl"]
    )
    messages_field: str = Field("messages", description="the field holding the message list")
    tokenizer: str = Field(FROM_MODEL, description="'model' (the model's) or a tokenizer spec")
    chat_template: str = Field(
        FROM_MODEL,
        description="'model' (the model's, else the default), 'default' ('role: content' "
        "lines) or a chat_template.json file",
    )
    seq_len: int = Field(ge=1, description="tokens the model reads per row", examples=[512])
    packing: bool = Field(True, description="several conversations per row, masked apart")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="conversations held out")
    batch_size: int = Field(8, ge=1, description="global training batch size (rows)")
    eval_batch_size: int = Field(8, ge=1, description="evaluation batch size per process")
    num_workers: int = Field(0, ge=0, description="dataloader worker processes")
    shuffle: bool = True
    drop_last: bool = True


def split_held_out(count: int, fraction: float, seed: int = 0) -> np.ndarray:
    """Which of `count` examples are held out for validation (at least one if any)."""
    chosen = np.random.default_rng(seed).random(count) < fraction
    if fraction > 0 and count > 1 and not chosen.any():
        chosen[-1] = True
    return chosen


def chat_inputs(config: Any, context: DataContext) -> tuple[ChatEncoder, list[str], int]:
    """What chat and preference data share: the encoder (tokenizer + template), the JSONL
    paths and the padding id (end-of-text, or 0)."""
    tokenizer, template = tokenizer_and_template(
        config.tokenizer, config.chat_template, context.model
    )
    paths = [config.path] if isinstance(config.path, str) else list(config.path)
    pad = tokenizer.eos_id if tokenizer.eos_id is not None else 0
    return ChatEncoder(tokenizer, template), paths, pad


@builder(ChatDataConfig)
def build_chat(config: ChatDataConfig, context: DataContext) -> DataLoaders:
    encoder, paths, pad = chat_inputs(config, context)
    template = encoder.template
    examples = []
    for where, record in read_jsonl(paths):
        if not isinstance(record, dict) or config.messages_field not in record:
            fields = (
                ", ".join(sorted(record)) if isinstance(record, dict) else type(record).__name__
            )
            raise DataError(f"{where}: no field {config.messages_field!r} (found: {fields}).")
        messages = check_messages(
            record[config.messages_field], where, config.messages_field, encoder.roles
        )
        if not any(m["role"] == "assistant" for m in messages):
            raise DataError(f"{where}: the conversation has no assistant turn: nothing to learn.")
        examples.append(encoder.encode(messages))
    if not examples:
        raise DataError(f"data.path: {', '.join(paths)} holds no conversations.")
    examples = truncate(examples, config.seq_len + 1, ", ".join(paths))
    held_out = split_held_out(len(examples), config.val_fraction)
    train_examples = [e for e, v in zip(examples, held_out) if not v]
    val_examples = [e for e, v in zip(examples, held_out) if v]
    train = PackedChats(train_examples, config.seq_len, pad, config.packing)
    log.info(
        "chat data: %d conversations in %d rows of %d tokens (%.0f%% filled), template %s",
        len(train_examples),
        len(train),
        config.seq_len + 1,
        100 * train.fill(),
        template.source,
    )
    val = PackedChats(val_examples, config.seq_len, pad, config.packing) if val_examples else None
    fix = "lower batch_size or seq_len, or add conversations"
    return text_loaders(config, context, train, val, "training rows", fix)
