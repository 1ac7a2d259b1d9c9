"""Joining the job a launcher started: the process group and this process's device.

A launcher (`tessera train --nproc`, `torchrun`, SLURM's `srun`, a Kubernetes PyTorchJob) starts
one process per device and sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and
MASTER_PORT. `start` joins those processes into a `torch.distributed` process group (nccl on
GPUs, gloo on CPUs) and picks this process's device; `stop` leaves it.
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from tessera.core.errors import ConfigError, UserError
from tessera.core.world import current_world, is_initialized

BACKENDS = ("auto", "nccl", "gloo")


@dataclass(frozen=True)
class ProcessInfo:
    """Where this process sits in the job, and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device
    backend: str | None  # None: no process group (a single process)
    created_group: bool = False  # this call joined the group (so the run leaves it at the end)


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
    world = current_world()
    rank, world_size = world.rank, world.size
    local_rank, local_world_size = world.local_rank, world.local_size
    chosen = _device_for(local_rank, local_world_size, device)
    if is_initialized():
        return ProcessInfo(
            rank, world_size, local_rank, local_world_size, chosen, dist.get_backend()
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
    return ProcessInfo(rank, world_size, local_rank, local_world_size, chosen, name, True)


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


# What a collective raises on the ranks left behind when another rank dies (gloo, nccl, store).
_PEER_LOST = (
    "Connection reset by peer",
    "Connection closed by peer",
    "Broken pipe",
    "Connection refused",
    "NCCL communicator was aborted",
    "Timed out",
    "timed out",
)


LOST_CONTACT_EXIT = 75  # EX_TEMPFAIL: this rank is fine, another one went away first


def lost_contact(error: BaseException) -> str | None:
    """Why this rank lost the job, when `error` says another rank went away; else None.

    Those errors are a consequence, not the cause: the launcher names the rank that died."""
    seen: BaseException | None = error
    while seen is not None:
        text = str(seen)
        found = next((phrase for phrase in _PEER_LOST if phrase in text), None)
        if found is not None or isinstance(seen, dist.DistError):
            return found or type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return None
