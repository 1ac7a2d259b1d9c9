"""Which rank this process is, for splitting data: explicit values, then torch.distributed, then
the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE), then a single process."""

from __future__ import annotations

import os
from dataclasses import dataclass

from tessera.core.errors import DataError


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    local_size: int


def current_world(rank: int | None = None, size: int | None = None) -> World:
    """The data-parallel position of this process; `rank`/`size` override (for tests)."""
    detected_rank, detected_size = 0, 1
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            detected_rank, detected_size = dist.get_rank(), dist.get_world_size()
        else:
            raise RuntimeError
    except (ImportError, RuntimeError):
        detected_rank = int(os.environ.get("RANK", 0))
        detected_size = int(os.environ.get("WORLD_SIZE", 1))
    rank = detected_rank if rank is None else rank
    size = detected_size if size is None else size
    if size < 1 or not 0 <= rank < size:
        raise DataError(f"Rank {rank} is not valid for world size {size} (need 0 <= rank < size).")
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", 1 if size == 1 else size))
    local_rank = int(os.environ.get("LOCAL_RANK", rank % max(local_size, 1)))
    return World(rank, size, local_rank, local_size)
