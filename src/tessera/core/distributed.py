"""Multi-process training on PyTorch's own engines: process group, DDP and FSDP2 wrapping.

A launcher (`tessera train --nproc`, `torchrun`, SLURM's `srun`, a Kubernetes PyTorchJob) starts
one process per device and sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and
MASTER_PORT. `start` joins those processes into a `torch.distributed` process group (nccl on
GPUs, gloo on CPUs) and picks this process's device. `ParallelWrapper` wraps the model at the
`INIT` event -- after any model surgery, before a checkpoint is loaded -- in
`DistributedDataParallel` or FSDP2's `fully_shard`, and averages the logged loss over ranks.
"""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from tessera.core.callback import Callback
from tessera.core.errors import ConfigError, UserError

if TYPE_CHECKING:
    from torch.distributed.device_mesh import DeviceMesh

    from tessera.core.logger import Logger
    from tessera.core.state import State

BACKENDS = ("auto", "nccl", "gloo")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ProcessInfo:
    """Where this process sits in the job, and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device
    backend: str | None  # None: no process group (a single process)


# -- rank helpers -----------------------------------------------------------------------------


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_initialized() else int(os.environ.get("RANK", 0))


def get_world_size() -> int:
    return dist.get_world_size() if is_initialized() else int(os.environ.get("WORLD_SIZE", 1))


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def launched_by_torchrun() -> bool:
    """True inside a worker process: torchrun's elastic agent sets TORCHELASTIC_RUN_ID, and
    any launcher that starts one process per device sets LOCAL_RANK. (RANK alone is not
    enough: a Kubernetes PyTorchJob sets RANK/WORLD_SIZE per pod, for torchrun to read.)"""
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (bind to port 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# -- process group ----------------------------------------------------------------------------


def choose_backend(requested: str, device: torch.device) -> str:
    """nccl for CUDA devices, gloo for CPUs, unless the run file names one."""
    if requested not in BACKENDS:
        raise ConfigError(
            f"parallelism.backend: {requested!r} is not a backend; use one of {', '.join(BACKENDS)}"
        )
    if requested == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if requested == "nccl" and (device.type != "cuda" or not dist.is_nccl_available()):
        raise ConfigError(
            "parallelism.backend: 'nccl' needs CUDA GPUs and a PyTorch built with NCCL, but this "
            f"process trains on {device.type}; use backend 'gloo' (or 'auto', which picks gloo "
            "on CPUs and nccl on GPUs)"
        )
    return requested


def _device_for(local_rank: int, local_world_size: int, requested: str | None) -> torch.device:
    if requested is not None and not requested.startswith("cuda"):
        return torch.device(requested)
    if not torch.cuda.is_available():
        if requested is not None:
            raise ConfigError(f"device: {requested!r} was asked for, but no CUDA GPU is visible")
        single = local_world_size == 1
        return torch.device("mps" if single and torch.backends.mps.is_available() else "cpu")
    count = torch.cuda.device_count()
    if local_world_size > count:
        raise UserError(
            f"{local_world_size} processes were started on this node but it has {count} visible "
            f"GPU(s); start at most {count} per node (--nproc {count}), or set device=cpu to "
            "train on CPU processes"
        )
    device = torch.device("cuda", local_rank)
    if requested is not None and ":" in requested and local_world_size == 1:
        device = torch.device(requested)  # one process on a named GPU (device=cuda:1)
    torch.cuda.set_device(device)
    return device


def start(
    backend: str = "auto",
    timeout_s: float = 600.0,
    device: str | None = None,
    need_group: bool = False,
) -> ProcessInfo:
    """Join the job the launcher started (a no-op for a plain single process).

    A process group is made when WORLD_SIZE > 1, or when `need_group` (FSDP on one process).
    `timeout_s` bounds every collective, so a rank that dies cannot leave the others hanging
    forever (the elastic agent normally notices sooner and stops the group).
    """
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    local_rank = int(os.environ.get("LOCAL_RANK", rank % max(local_world_size, 1)))
    chosen = _device_for(local_rank, local_world_size, device)
    if is_initialized():
        return ProcessInfo(
            dist.get_rank(),
            dist.get_world_size(),
            local_rank,
            local_world_size,
            chosen,
            dist.get_backend(),
        )
    if world_size == 1 and not need_group:
        return ProcessInfo(0, 1, 0, 1, chosen, None)
    name = choose_backend(backend, chosen)
    options: dict[str, Any] = {"timeout": datetime.timedelta(seconds=timeout_s)}
    if chosen.type == "cuda":
        options["device_id"] = chosen
    store = _restart_store(world_size, options["timeout"])
    if store is not None:
        options.update(store=store, rank=rank, world_size=world_size)
    elif "MASTER_ADDR" not in os.environ:  # one process that needs a group (FSDP): local store
        options.update(
            init_method=f"tcp://127.0.0.1:{free_port()}", rank=rank, world_size=world_size
        )
    dist.init_process_group(name, **options)
    return ProcessInfo(rank, world_size, local_rank, local_world_size, chosen, name)


def _restart_store(world_size: int, timeout: datetime.timedelta) -> Any:
    """Under torchrun, the agent's key-value store with a prefix per restart attempt.

    The elastic agent keeps one store across restarts; without a fresh prefix, a restarted
    rank can read the address a dead rank published in the previous attempt and fail to
    connect (seen with gloo in torch 2.13). Returns None outside torchrun.
    """
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    client = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world_size,
        is_master=False,
        timeout=timeout,
    )
    return dist.PrefixStore(f"tessera/attempt-{attempt}", client)


def stop() -> None:
    """Leave the process group (at the end of a run, also after an error)."""
    if is_initialized():
        dist.destroy_process_group()


# -- reductions -------------------------------------------------------------------------------


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


# -- DDP --------------------------------------------------------------------------------------


def wrap_ddp(
    model: nn.Module,
    device: torch.device,
    find_unused_parameters: bool = False,
    bucket_cap_mb: float = 25.0,
) -> nn.Module:
    """`DistributedDataParallel` around the model: gradients all-reduced during backward."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
        bucket_cap_mb=bucket_cap_mb,
        gradient_as_bucket_view=True,
    )


# -- FSDP2 ------------------------------------------------------------------------------------


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


def find_blocks(model: nn.Module, wrap: Sequence[str] | None = None) -> list[nn.Module]:
    """The modules FSDP shards as units: instances of the named classes, or by default every
    member of an `nn.ModuleList` (the repeated blocks of a transformer)."""
    if wrap:
        names = set(wrap)
        blocks = [m for m in model.modules() if type(m).__name__ in names and m is not model]
        found = {type(m).__name__ for m in blocks}
        missing = names - found
        if missing:
            present = sorted({type(m).__name__ for m in model.modules()})
            raise ConfigError(
                f"parallelism.wrap: no module of class {', '.join(sorted(missing))} in the "
                f"model; its module classes are: {', '.join(present)}"
            )
        return blocks
    blocks = []
    for module in model.modules():
        if isinstance(module, nn.ModuleList):
            blocks.extend(module)
    return blocks


def checkpoint_activations(block: nn.Module) -> None:
    """Recompute `block`'s activations in backward instead of storing them (saves memory)."""
    from torch.utils.checkpoint import checkpoint

    forward = block.forward

    def checkpointed(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    block.forward = checkpointed  # type: ignore[method-assign]


def apply_fsdp(
    model: nn.Module,
    mesh: DeviceMesh,
    *,
    reshard_after_forward: bool = True,
    param_dtype: str | None = None,
    reduce_dtype: str | None = None,
    cpu_offload: bool = False,
    activation_checkpointing: bool = False,
    wrap: Sequence[str] | None = None,
) -> nn.Module:
    """Shard the model in place with FSDP2: each block, then the root (for what is left).

    Order matters and lives here: activation checkpointing wraps a block's forward first,
    then `fully_shard` puts its all-gather/reduce-scatter hooks around it.
    """
    from torch.distributed.fsdp import (
        CPUOffloadPolicy,
        MixedPrecisionPolicy,
        OffloadPolicy,
        fully_shard,
    )

    policy = MixedPrecisionPolicy(
        param_dtype=DTYPES[param_dtype] if param_dtype else None,
        reduce_dtype=DTYPES[reduce_dtype] if reduce_dtype else None,
    )
    offload = CPUOffloadPolicy() if cpu_offload else OffloadPolicy()
    options = {"mesh": mesh, "mp_policy": policy, "offload_policy": offload}
    for block in find_blocks(model, wrap):
        if activation_checkpointing:
            checkpoint_activations(block)
        fully_shard(block, reshard_after_forward=reshard_after_forward, **options)
    fully_shard(model, reshard_after_forward=reshard_after_forward, **options)
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


class ParallelWrapper(Callback):
    """Wraps `state.model` for data-parallel training at INIT and averages the logged loss.

    strategy 'ddp': `DistributedDataParallel` (every rank holds the whole model; checkpoints
    are written by rank 0). strategy 'fsdp': FSDP2 `fully_shard` (parameters, gradients and
    optimizer state sharded; checkpoints written by every rank through DCP).
    """

    def __init__(self, strategy: str, info: ProcessInfo, options: dict[str, Any]) -> None:
        if strategy not in ("ddp", "fsdp"):
            raise ConfigError(f"parallelism.strategy: {strategy!r} is not 'ddp' or 'fsdp'")
        self.strategy = strategy
        self.info = info
        self.options = dict(options)

    def init(self, state: State, logger: Logger) -> None:
        if not is_initialized():
            return
        if self.strategy == "ddp":
            if self.info.world_size > 1:
                state.model = wrap_ddp(
                    state.model,
                    state.device,
                    self.options.get("find_unused_parameters", False),
                    self.options.get("bucket_cap_mb", 25.0),
                )
            return
        model = state.unwrapped_model
        before = dict(model.named_parameters())
        mesh = make_mesh(
            state.device, self.options.get("sharding", "full"), self.options.get("shard_group_size")
        )
        apply_fsdp(
            model,
            mesh,
            reshard_after_forward=self.options.get("reshard_after_forward", True),
            param_dtype=self.options.get("param_dtype"),
            reduce_dtype=self.options.get("reduce_dtype"),
            cpu_offload=self.options.get("cpu_offload", False),
            activation_checkpointing=self.options.get("activation_checkpointing", False),
            wrap=self.options.get("wrap"),
        )
        rebind_optimizers(state.optimizers, before, model)

    def batch_end(self, state: State, logger: Logger) -> None:
        # Every rank saw a different part of the batch: log the mean over all of them.
        if state.batch_loss is not None and state.world_size > 1:
            state.batch_loss = all_reduce_mean(state.batch_loss)
