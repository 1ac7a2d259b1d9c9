"""Where this process sits in a multi-process job: rank, world size and the collectives the
rest of Tessera needs (a mean, a gather, a broadcast), all no-ops for a single process.

This is the one source of rank information: an initialised `torch.distributed` process group
first, then the launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, set by
torchrun, srun or a Kubernetes job), then a single process. Joining a process group and wrapping
models live in `tessera.parallel`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from tessera.core.errors import UserError


@dataclass(frozen=True)
class World:
    """This process's data-parallel position."""

    rank: int
    size: int
    local_rank: int
    local_size: int


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def _environment_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(
            f"environment variable {name}={value!r} is not an integer; the launcher (torchrun, "
            "srun, ...) sets it to a process number"
        ) from None


def current_world(rank: int | None = None, size: int | None = None) -> World:
    """The position of this process; explicit `rank`/`size` override (tests of data splitting)."""
    if is_initialized():
        detected_rank, detected_size = dist.get_rank(), dist.get_world_size()
    else:
        detected_rank = _environment_int("RANK", 0)
        detected_size = _environment_int("WORLD_SIZE", 1)
    rank = detected_rank if rank is None else rank
    size = detected_size if size is None else size
    if size < 1 or not 0 <= rank < size:
        raise UserError(f"rank {rank} is not valid for world size {size} (need 0 <= rank < size)")
    local_size = _environment_int("LOCAL_WORLD_SIZE", 1 if size == 1 else size)
    local_rank = _environment_int("LOCAL_RANK", rank % max(local_size, 1))
    return World(rank, size, local_rank, local_size)


def get_rank() -> int:
    return current_world().rank


def get_world_size() -> int:
    return current_world().size


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of `tensor` over all ranks (a new tensor; the input is left as it was)."""
    if not is_initialized() or dist.get_world_size() == 1:
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)  # gloo has no AVG
    return total / dist.get_world_size()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if not is_initialized() or dist.get_world_size() == 1:
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def all_gather_objects(value: Any) -> list[Any]:
    """Every rank's `value` (picklable), in rank order; [value] without a process group."""
    if not is_initialized() or dist.get_world_size() == 1:
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: Any, source: int = 0) -> Any:
    if not is_initialized() or dist.get_world_size() == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=source)
    return holder[0]
