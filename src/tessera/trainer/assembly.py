"""Turning what `Trainer` is given into components: optimizers, schedulers, registered
callbacks and loggers, the default checkpointer, and facts read off the data loaders."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch

from tessera.core.checkpointer import Checkpointer, FileCheckpointer
from tessera.core.component import build_config
from tessera.optim import OptimizerConfig, SchedulerConfig

if TYPE_CHECKING:
    from tessera.trainer.run_folder import RunFolder
    from tessera.trainer.settings import TrainerSettings


def default_checkpointer(
    folder: RunFolder | None, settings: TrainerSettings, sharded: bool
) -> Checkpointer | None:
    """The run folder's checkpointer: sharded (DCP) under FSDP, one file per checkpoint else."""
    if folder is None:
        return None
    keep_last = settings.keep_last
    if sharded:
        from tessera.parallel.sharded_checkpointer import ShardedCheckpointer

        async_save = settings.parallelism.async_checkpoint
        return ShardedCheckpointer(folder.checkpoints, keep_last, async_save)
    return FileCheckpointer(folder.checkpoints, keep_last)


def registered(kind: str, spec: dict[str, Any], **context: Any) -> list[Any]:
    if kind == "callbacks":
        from tessera.callbacks.registry import CALLBACKS as registry
    else:
        from tessera.loggers.registry import LOGGERS as registry
    return registry.build_mapping(spec, **context)


def optimizers(given: Any, model: torch.nn.Module) -> list[torch.optim.Optimizer]:
    """Optimizer objects as given, or built from a config (the default config when None)."""
    if isinstance(given, torch.optim.Optimizer):
        return [given]
    if given is None or isinstance(given, (dict, OptimizerConfig)):
        config = build_config(OptimizerConfig, given or {}, "optimizer")
        return config.build_all(model)  # type: ignore[attr-defined]
    return list(given)


def schedulers(given: Any, optimizers: list[torch.optim.Optimizer], ratio: float) -> list[Any]:
    """Schedulers as given (stretched by `ratio` where they allow), or built from a config."""
    if given is None or isinstance(given, (dict, SchedulerConfig)):
        config = build_config(SchedulerConfig, given or {}, "scheduler")
        return [config.build(optimizer, ratio) for optimizer in optimizers]  # type: ignore[attr-defined]
    schedulers = list(given) if isinstance(given, (list, tuple)) else [given]
    if ratio != 1.0:
        for scheduler in schedulers:
            schedule = getattr(scheduler, "schedule", None)
            if schedule is not None and hasattr(schedule, "scaled"):
                scheduler.schedule = schedule.scaled(ratio)
    return schedulers


def as_eval_dict(data: Any) -> dict[str, Iterable[Any]]:
    if data is None:
        return {}
    return dict(data) if isinstance(data, dict) else {"eval": data}


def fixed_microbatch(value: int | str | None) -> int | None:
    return value if isinstance(value, int) else None


def length(loader: Iterable[Any]) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


def batch_size(loader: Iterable[Any], world_size: int) -> int | None:
    batch_size = getattr(loader, "batch_size", None)
    return batch_size * world_size if isinstance(batch_size, int) else None
