"""BatchSizeWarmup (GPT-3, Brown et al., 2020; the speed runs): small batches first.

Early in training the gradient is large and consistent, so a small batch gives nearly the same
step as a full one for a fraction of the compute. The trained share of each batch grows
linearly from `min_fraction` to 1 over the first `duration` of the run (rounded to a multiple
of `multiple_of` samples); the rest of an early batch is dropped, not trained on. The data
loader still reads whole batches, so epochs, sample counts and resumption are exactly those of
the run without the method, while the token count (and `tok` durations) counts what was
trained. Acts on dict batches (every tensor of the batch's first size) and on
(inputs, targets, ...) tuples. It changes the math.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from tessera.algorithms.common import check_fields
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "batch_size_warmup"
__all__ = ["BatchSizeWarmup", "BatchSizeWarmupConfig", "take_samples", "warmup_batch_size"]


class BatchSizeWarmupConfig(ComponentConfig):
    min_fraction: float = Field(
        0.25, gt=0.0, le=1.0, description="share of each batch trained at the start"
    )
    duration: float = Field(
        0.2, gt=0.0, le=1.0, description="fraction of the run over which it grows to 1"
    )
    multiple_of: int = Field(1, ge=1, description="round the number of samples to a multiple")


def warmup_batch_size(
    progress: float, full: int, min_fraction: float, duration: float, multiple_of: int = 1
) -> int:
    """Samples to train at a fraction `progress` of the run, for batches of `full`."""
    check_fields(BatchSizeWarmupConfig, NAME, min_fraction=min_fraction, duration=duration)
    if progress >= duration:
        return full
    fraction = min_fraction + (1.0 - min_fraction) * progress / duration
    size = int(full * fraction) // multiple_of * multiple_of
    return min(full, max(size, multiple_of, 1))


def _batch_size(batch: Any) -> int:
    if isinstance(batch, dict):
        first = next((v for v in batch.values() if isinstance(v, torch.Tensor)), None)
    elif isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        first = batch[0]
    else:
        first = None
    if first is None or first.ndim == 0:
        raise ConfigError(
            f"algorithm '{NAME}' needs batches of tensors (a dict or an (inputs, targets) "
            f"tuple); got a batch of type {type(batch).__name__}"
        )
    return first.shape[0]


def take_samples(batch: Any, count: int) -> Any:
    """The first `count` samples of a batch: every tensor whose first size is the batch's."""
    size = _batch_size(batch)

    def cut(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == size:
            return value[:count]
        return value

    if isinstance(batch, dict):
        return {key: cut(value) for key, value in batch.items()}
    return type(batch)(cut(value) for value in batch)


class BatchSizeWarmup(Algorithm):
    name = NAME
    Config = BatchSizeWarmupConfig
    runs_after = ("sequence_length_warmup",)

    def match(self, event: Event, state: State) -> bool:
        return event == Event.AFTER_DATALOADER

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        c = self.config
        full = _batch_size(state.batch)
        size = warmup_batch_size(state.progress(), full, c.min_fraction, c.duration, c.multiple_of)
        if size < full:
            state.batch = take_samples(state.batch, size)
