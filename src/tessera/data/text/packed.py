"""Several short sequences per training row, kept apart by segment ids.

`pack` places variable-length examples (conversations) into rows of `seq_len + 1` tokens,
longest first, each into the fullest row it still fits (best-fit decreasing), so little of a
row is padding. Every row carries `segment_ids` numbering its examples; the GPT then lets a
token attend only to its own example and restarts positions there
(`tessera.models.gpt.documents`), and the first token of each example gets no loss (it would be
predicted from the previous example). Padding is a segment of its own, with no loss.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from tessera.data.text.chat import IGNORE, EncodedChat

log = logging.getLogger(__name__)


def truncate(examples: list[EncodedChat], width: int, what: str) -> list[EncodedChat]:
    """Examples cut to `width` tokens (said aloud); those left with nothing to learn dropped."""
    kept, cut, empty = [], 0, 0
    for example in examples:
        if len(example) > width:
            example = EncodedChat(example.tokens[:width], example.labels[:width])
            cut += 1
        if all(label == IGNORE for label in example.labels[1:]):
            empty += 1
            continue
        kept.append(example)
    if cut:
        log.warning(
            "%s: %d of %d examples were longer than %d tokens and were cut",
            what,
            cut,
            len(examples),
            width,
        )
    if empty:
        log.warning(
            "%s: %d examples had no scored tokens within %d tokens and were left out",
            what,
            empty,
            width,
        )
    return kept


def best_fit(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Example indices per row: longest first, each into the row with the least room left
    that still holds it (a new row when none does)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rooms: list[tuple[int, int]] = []  # (room left, row) sorted by room
    rows: list[list[int]] = []
    for index in order:
        size = lengths[index]
        at = bisect.bisect_left(rooms, (size, -1))
        if at == len(rooms):
            rows.append([index])
            room, row = width - size, len(rows) - 1
        else:
            room, row = rooms.pop(at)
            rows[row].append(index)
            room -= size
        bisect.insort(rooms, (room, row))
    return rows


class PackedChats(Dataset):
    """Rows of `seq_len + 1` tokens: `input_ids`, `labels`, and `segment_ids` when packed."""

    def __init__(
        self, examples: list[EncodedChat], seq_len: int, pad_id: int, packing: bool
    ) -> None:
        width = seq_len + 1
        groups = (
            best_fit([len(e) for e in examples], width)
            if packing
            else [[i] for i in range(len(examples))]
        )
        self.seq_len = seq_len
        self.packing = packing
        self.input_ids = np.full((len(groups), width), pad_id, dtype=np.int64)
        self.labels = np.full((len(groups), width), IGNORE, dtype=np.int64)
        self.segment_ids = np.zeros((len(groups), width), dtype=np.int64)
        for row, group in enumerate(groups):
            start = 0
            for segment, index in enumerate(group):
                example = examples[index]
                end = start + len(example)
                self.input_ids[row, start:end] = example.tokens
                self.labels[row, start:end] = example.labels
                self.labels[row, start] = IGNORE  # predicted from the previous example
                self.segment_ids[row, start:end] = segment
                start = end
            self.segment_ids[row, start:] = len(group)  # padding: a segment of its own
        self.tokens = sum(len(e) for e in examples)

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {
            "input_ids": torch.from_numpy(self.input_ids[index]),
            "labels": torch.from_numpy(self.labels[index]),
        }
        if self.packing:
            item["segment_ids"] = torch.from_numpy(self.segment_ids[index])
        return item

    def fill(self) -> float:
        """Share of row positions holding real tokens."""
        return self.tokens / max(1, self.input_ids.size)
