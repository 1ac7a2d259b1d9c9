"""Registers preference pairs for DPO: `data: {name: preference, path: pairs.jsonl, ...}`.

Each JSONL line holds a `prompt` (a string, read as one user message, or a list of messages),
the `chosen` answer and the `rejected` one (strings, or a single assistant message, or the
whole conversation with the prompt's messages first). The prompt is rendered with the chat
template up to the assistant's opening; each answer closes its turn. Rows are padded to
`seq_len + 1` tokens with labels only on the answer. Records may also carry
`reference_chosen_logp` and `reference_rejected_logp` (precomputed reference log-probabilities),
which the batches then hold for `model.reference: precomputed`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import Dataset

from tessera.core.component import ComponentConfig
from tessera.core.errors import DataError
from tessera.core.registry import builder
from tessera.data.registry import DataContext, DataLoaders
from tessera.data.text.chat import (
    FROM_MODEL,
    IGNORE,
    ChatEncoder,
    check_messages,
    read_jsonl,
)
from tessera.data.text.chat_data import chat_inputs, split_held_out
from tessera.data.text.loaders import text_loaders

log = logging.getLogger(__name__)
SIDES = ("chosen", "rejected")
REFERENCE_FIELDS = ("reference_chosen_logp", "reference_rejected_logp")


class PreferenceDataConfig(ComponentConfig):
    """Prompt / chosen / rejected records for preference tuning."""

    name: str = "preference"
    path: list[str] | str = Field(
        description="JSONL file(s), one preference pair per line", examples=["pairs.jsonl"]
    )
    tokenizer: str = Field(FROM_MODEL, description="'model' (the model's) or a tokenizer spec")
    chat_template: str = Field(
        FROM_MODEL, description="'model', 'default' or a chat_template.json file"
    )
    seq_len: int = Field(ge=1, description="tokens per row (prompt + answer)", examples=[512])
    val_fraction: float = Field(0.1, ge=0, lt=1, description="pairs held out")
    batch_size: int = Field(8, ge=1, description="global training batch size (pairs)")
    eval_batch_size: int = Field(8, ge=1, description="evaluation batch size per process")
    num_workers: int = Field(0, ge=0, description="dataloader worker processes")
    shuffle: bool = True
    drop_last: bool = True


def _prompt_messages(record: dict, where: str, roles: list[str]) -> list[dict]:
    prompt = record["prompt"]
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return check_messages(prompt, where, "prompt", roles)


def _answer(record: dict, side: str, prompt: list[dict], where: str, roles: list[str]) -> str:
    """The assistant's text of one answer."""
    answer = record[side]
    if isinstance(answer, str):
        return answer
    messages = check_messages(answer, where, side, roles)
    if messages[: len(prompt)] == prompt:
        messages = messages[len(prompt) :]  # the whole conversation: drop the prompt part
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        raise DataError(
            f"{where}: '{side}' must be the answer: a string, one assistant message, or the "
            "prompt's messages followed by one assistant message."
        )
    return messages[0]["content"]


def encode_pair(
    record: Any, where: str, encoder: ChatEncoder
) -> tuple[list[int], list[int], list[int], list[float] | None]:
    """(prompt tokens, chosen tokens, rejected tokens, reference log-probs or None)."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: each line must be an object, got {type(record).__name__}.")
    for field in ("prompt", *SIDES):
        if field not in record:
            raise DataError(
                f"{where}: no {field!r}; a preference record needs prompt, chosen and rejected "
                f"(found: {', '.join(sorted(record))})."
            )
    prompt = _prompt_messages(record, where, encoder.roles)
    answers = [encoder.reply(_answer(record, side, prompt, where, encoder.roles)) for side in SIDES]
    reference = None
    if any(field in record for field in REFERENCE_FIELDS):
        if not all(isinstance(record.get(f), (int, float)) for f in REFERENCE_FIELDS):
            raise DataError(f"{where}: give both {' and '.join(REFERENCE_FIELDS)} as numbers.")
        reference = [float(record[f]) for f in REFERENCE_FIELDS]
    return encoder.prompt(prompt), answers[0], answers[1], reference


class PreferencePairs(Dataset):
    """Padded chosen and rejected rows, labels on the answers only."""

    def __init__(self, pairs: list[tuple], seq_len: int, pad_id: int) -> None:
        width = seq_len + 1
        count = len(pairs)
        self.rows = {
            f"{side}_{kind}": np.full((count, width), pad_id if kind == "input_ids" else IGNORE)
            for side in SIDES
            for kind in ("input_ids", "labels")
        }
        self.reference = None
        if pairs and pairs[0][3] is not None:
            self.reference = np.array([p[3] for p in pairs], dtype=np.float32)
        for index, (prompt, *answers, _) in enumerate(pairs):
            for side, answer in zip(SIDES, answers):
                tokens = (prompt + answer)[:width]
                self.rows[f"{side}_input_ids"][index, : len(tokens)] = tokens
                self.rows[f"{side}_labels"][index, len(prompt) : len(tokens)] = tokens[
                    len(prompt) :
                ]

    def __len__(self) -> int:
        return len(self.rows["chosen_input_ids"])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {
            key: torch.from_numpy(rows[index].astype(np.int64)) for key, rows in self.rows.items()
        }
        if self.reference is not None:
            item["reference_chosen_logps"] = torch.tensor(self.reference[index, 0])
            item["reference_rejected_logps"] = torch.tensor(self.reference[index, 1])
        return item


def _fit(pairs: list[tuple], width: int, what: str) -> list[tuple]:
    """Pairs whose prompt leaves room for an answer; said aloud when answers are cut or pairs
    dropped."""
    kept, cut = [], 0
    for pair in pairs:
        prompt, chosen, rejected, _ = pair
        if len(prompt) >= width - 1:
            continue
        cut += len(prompt) + max(len(chosen), len(rejected)) > width
        kept.append(pair)
    if len(kept) < len(pairs):
        log.warning(
            "%s: %d pairs have prompts of %d tokens or more and were left out",
            what,
            len(pairs) - len(kept),
            width - 1,
        )
    if cut:
        log.warning("%s: %d pairs had answers cut to fit %d tokens", what, cut, width)
    return kept


@builder(PreferenceDataConfig)
def build_preference(config: PreferenceDataConfig, context: DataContext) -> DataLoaders:
    encoder, paths, pad = chat_inputs(config, context)
    pairs = [encode_pair(record, where, encoder) for where, record in read_jsonl(paths)]
    if not pairs:
        raise DataError(f"data.path: {', '.join(paths)} holds no preference pairs.")
    with_reference = {p[3] is not None for p in pairs}
    if len(with_reference) > 1:
        raise DataError(
            f"data.path: some records carry {REFERENCE_FIELDS[0]} and some do not; give it "
            "for all or none."
        )
    pairs = _fit(pairs, config.seq_len + 1, ", ".join(paths))
    held_out = split_held_out(len(pairs), config.val_fraction)
    train = PreferencePairs([p for p, v in zip(pairs, held_out) if not v], config.seq_len, pad)
    val = None
    if held_out.any():
        val = PreferencePairs([p for p, v in zip(pairs, held_out) if v], config.seq_len, pad)
    return text_loaders(config, context, train, val, "training pairs", "")
