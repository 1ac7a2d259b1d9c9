"""FSDP2 (`fully_shard`): parameters, gradients and optimizer state sharded over ranks.

Each repeated block is sharded as a unit (its weights gathered just before its forward and
freed after), then the root takes what is left. Hybrid sharding shards within a group (by
default one node) and replicates across groups, so the heavy all-gathers stay inside a node.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn

from tessera.core.errors import ConfigError
from tessera.parallel.blocks import find_blocks
from tessera.parallel.config import ParallelismConfig

if TYPE_CHECKING:
    from torch.distributed.device_mesh import DeviceMesh

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def make_mesh(
    device: torch.device, sharding: str = "full", shard_group_size: int | None = None
) -> DeviceMesh:
    """A 1-D mesh (shard over all ranks) or, for 'hybrid', 2-D: replicate x shard.

    Hybrid sharding shards within a group (by default one node) and replicates across groups,
    so the heavy all-gathers stay on the fast links inside a node.
    """
    from torch.distributed.device_mesh import init_device_mesh

    world_size = dist.get_world_size()
    if sharding == "full":
        return init_device_mesh(device.type, (world_size,), mesh_dim_names=("shard",))
    if sharding != "hybrid":
        raise ConfigError(f"parallelism.sharding: {sharding!r} is not 'full' or 'hybrid'")
    size = shard_group_size or int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    if size < 1 or world_size % size:
        raise ConfigError(
            f"parallelism.shard_group_size: {size} does not divide the world size {world_size}; "
            "use a divisor of it (usually the processes per node)"
        )
    return init_device_mesh(
        device.type, (world_size // size, size), mesh_dim_names=("replicate", "shard")
    )


def apply_fsdp(model: nn.Module, mesh: DeviceMesh, config: ParallelismConfig) -> nn.Module:
    """Shard the model in place with FSDP2: each block, then the root (for what is left)."""
    from torch.distributed.fsdp import (
        CPUOffloadPolicy,
        MixedPrecisionPolicy,
        OffloadPolicy,
        fully_shard,
    )

    param_dtype = DTYPES[config.param_dtype] if config.param_dtype else None
    reduce_dtype = DTYPES[config.reduce_dtype] if config.reduce_dtype else None
    options = {
        "mesh": mesh,
        "mp_policy": MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype),
        "offload_policy": CPUOffloadPolicy() if config.cpu_offload else OffloadPolicy(),
        "reshard_after_forward": config.reshard_after_forward,
    }
    for block in find_blocks(model, config.wrap):
        fully_shard(block, **options)
    fully_shard(model, **options)
    return model


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(module, FSDPModule) for module in model.modules())


def rebind_optimizers(
    optimizers: Sequence[torch.optim.Optimizer],
    before: dict[str, nn.Parameter],
    model: nn.Module,
) -> None:
    """Point optimizers at the sharded parameters `fully_shard` made, matched by name."""
    after = dict(model.named_parameters())
    replacement = {id(parameter): after[name] for name, parameter in before.items()}
    for optimizer in optimizers:
        if optimizer.state:
            raise RuntimeError("FSDP must shard the model before the optimizer takes a step")
        for group in optimizer.param_groups:
            group["params"] = [replacement.get(id(p), p) for p in group["params"]]
