"""Gradient accumulation: split a batch into microbatches whose gradients add up to the batch's.

With `device_train_microbatch_size: auto`, a microbatch that runs out of memory is halved and the
same batch is tried again from scratch, so the result equals a run that used the smaller size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch


def batch_size_of(batch: Any) -> int:
    """The leading dimension of a batch's first tensor."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, Mapping):
        return batch_size_of(next(iter(batch.values())))
    if isinstance(batch, Sequence) and not isinstance(batch, str):
        return batch_size_of(batch[0])
    raise TypeError(f"cannot find the batch size of a {type(batch).__name__}")


def split_batch(batch: Any, microbatch_size: int) -> list[Any]:
    """Split every tensor of a (nested) batch along dimension 0 into chunks of the given size."""
    size = batch_size_of(batch)
    if microbatch_size >= size:
        return [batch]
    starts = range(0, size, microbatch_size)
    return [_slice(batch, start, start + microbatch_size) for start in starts]


def _slice(batch: Any, start: int, stop: int) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch[start:stop]
    if isinstance(batch, Mapping):
        return {key: _slice(value, start, stop) for key, value in batch.items()}
    if isinstance(batch, tuple):
        return tuple(_slice(item, start, stop) for item in batch)
    if isinstance(batch, list):
        return [_slice(item, start, stop) for item in batch]
    return batch


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to `device` without blocking the host."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, tuple):
        return tuple(move_to_device(item, device) for item in batch)
    if isinstance(batch, list):
        return [move_to_device(item, device) for item in batch]
    return batch


def is_out_of_memory(error: BaseException) -> bool:
    """True for a device out-of-memory error (CUDA or MPS) that a smaller microbatch may fix."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
