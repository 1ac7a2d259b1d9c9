"""SequenceLengthWarmup (Li et al., 2022): train language models on short sequences first.

The sequence length grows linearly from `min_seq_length` to the data's full length over the
first `duration` of the run, in multiples of `step_size`. Short early sequences are cheaper
(attention is quadratic in length) and stabilise early training. With `truncate=True` each
sequence is cut (fewer tokens per batch); otherwise it is reshaped into several shorter
sequences (`[B, T+1]` into `[B*T/L, L+1]`, every token kept). It changes the math. Acts on
dict batches with `input_ids` of shape [B, T+1] (and `labels`/`attention_mask` alike).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "sequence_length_warmup"
__all__ = [
    "SequenceLengthWarmup",
    "SequenceLengthWarmupConfig",
    "reshape_sequences",
    "truncate_sequences",
    "warmup_length",
]


class SequenceLengthWarmupConfig(ComponentConfig):
    min_seq_length: int = Field(8, ge=1, description="sequence length at the start of the run")
    duration: float = Field(
        0.3, gt=0.0, le=1.0, description="fraction of the run over which the length grows"
    )
    step_size: int = Field(8, ge=1, description="lengths are multiples of this")
    truncate: bool = Field(
        True,
        description="true: cut each sequence (fewer tokens); false: reshape it into several "
        "shorter ones (every token kept)",
    )


def warmup_length(
    progress: float, min_length: int, max_length: int, duration: float, step_size: int = 8
) -> int:
    """The sequence length (in predicted tokens) at a fraction `progress` of the run."""
    if duration <= 0 or progress >= duration:
        return max_length
    length = min_length + (max_length - min_length) * progress / duration
    length = int(length // step_size * step_size)
    return max(min(length, max_length), min(min_length, max_length))


def _sequence_tensors(batch: Any) -> dict[str, torch.Tensor]:
    if not isinstance(batch, dict) or "input_ids" not in batch:
        raise ConfigError(
            f"algorithm '{NAME}' needs language-model batches: a dict with 'input_ids' of shape "
            f"[batch, tokens + 1]; got a batch of type {type(batch).__name__}"
        )
    ids = batch["input_ids"]
    return {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and v.shape == ids.shape}


def truncate_sequences(batch: dict[str, Any], length: int) -> dict[str, Any]:
    """Keep the first `length` predictions of every sequence (`length + 1` tokens)."""
    tensors = _sequence_tensors(batch)
    return {**batch, **{k: v[:, : length + 1] for k, v in tensors.items()}}


def reshape_sequences(batch: dict[str, Any], length: int) -> dict[str, Any]:
    """Cut every [T+1]-token sequence into T // length windows of `length + 1` tokens.

    Consecutive windows share one token (the last input of one is the first of the next), so
    every prediction of the original sequence is trained when `length` divides T.
    """
    tensors = _sequence_tensors(batch)
    windows = {
        k: v.unfold(1, length + 1, length).reshape(-1, length + 1) for k, v in tensors.items()
    }
    return {**batch, **windows}


class SequenceLengthWarmup(Algorithm):
    name = NAME
    Config = SequenceLengthWarmupConfig

    def match(self, event: Event, state: State) -> bool:
        return event == Event.AFTER_DATALOADER

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        c = self.config
        full = _sequence_tensors(state.batch)["input_ids"].shape[1] - 1
        length = warmup_length(state.progress(), c.min_seq_length, full, c.duration, c.step_size)
        if length >= full:
            return
        change = truncate_sequences if c.truncate else reshape_sequences
        state.batch = change(state.batch, length)
