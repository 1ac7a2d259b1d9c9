"""Packed documents in one row: each attends only to itself and counts its own positions.

A packed training row holds several documents (conversations) back to back; `segment_ids`
[B, T] numbers them (equal ids = one document, consecutive). Without a mask the second
conversation would read the first; with `document_mask` a token sees only the earlier tokens of
its own document, and `document_positions` restarts the position count at every document, so a
packed conversation is computed exactly as it would be alone.
"""

from __future__ import annotations

import torch


def document_positions(segment_ids: torch.Tensor) -> torch.Tensor:
    """Position of each token within its document [B, T] (0 at each document's first token)."""
    length = segment_ids.shape[1]
    index = torch.arange(length, device=segment_ids.device).expand_as(segment_ids)
    starts = torch.ones_like(segment_ids, dtype=torch.bool)
    starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    first = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    return index - first


def document_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """Bool attention mask [B, 1, T, T]: causal, and only within the same document."""
    length = segment_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril()
    same = segment_ids.unsqueeze(2) == segment_ids.unsqueeze(1)
    return (same & causal).unsqueeze(1)
