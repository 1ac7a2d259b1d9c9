"""Builders: turn a validated `RunConfig` into the objects of a run and a ready `Trainer`.

The run folder `run_dir/name/` holds `config.yaml` (the resolved configuration),
`metrics.jsonl`, `checkpoints/` and, when training ends, `final/` (the exported model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from tessera.config.schema import OptimizerConfig, RunConfig, SchedulerConfig
from tessera.core import distributed, sharded_checkpoint
from tessera.core.checkpoint import atomic_write
from tessera.core.errors import ConfigError, UserError
from tessera.core.model import TrainableModel
from tessera.core.time import Time
from tessera.core.trainer import Trainer
from tessera.data.registry import DATASETS, DataContext, DataLoaders
from tessera.models.registry import MODELS
from tessera.optim import OPTIMIZERS, SCHEDULES, ScheduledLR, parameter_groups


@dataclass
class RunFolder:
    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def final(self) -> Path:
        return self.root / "final"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"


def prepare_run_folder(config: RunConfig, write: bool = True) -> RunFolder:
    """Create the run folder (or say clearly why it cannot be) and save the resolved config."""
    folder = RunFolder(Path(config.run_dir) / config.name)
    if not write:
        return folder
    try:
        folder.root.mkdir(parents=True, exist_ok=True)
        probe = folder.root / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise UserError(
            f"run_dir: cannot write the run folder {folder.root} ({error.strerror or error}); "
            "choose a writable run_dir (e.g. run_dir=/tmp/runs) or fix its permissions"
        ) from None
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    atomic_write(folder.config, lambda file: file.write(text), mode="w")
    return folder


def build_model(config: RunConfig) -> TrainableModel:
    return MODELS.build(config.model["name"], config.model)


def build_data(config: RunConfig, rank: int = 0, world_size: int = 1) -> DataLoaders:
    context = DataContext(seed=config.seed, rank=rank, world_size=world_size)
    return DATASETS.build(config.data["name"], config.data, context=context)


def build_optimizer(config: OptimizerConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay, config.decay_norm_and_bias)
    options: dict[str, Any] = {"lr": config.lr}
    for key in ("momentum", "nesterov", "betas", "eps", "foreach"):
        value = getattr(config, key)
        if value is not None:
            options[key] = value
    if config.name in ("adamw", "adam") and ("momentum" in options or "nesterov" in options):
        raise ConfigError(
            f"optimizer: 'momentum'/'nesterov' do not apply to {config.name}; use 'betas'"
        )
    if config.name in ("sgdw", "sgd") and ("betas" in options or "eps" in options):
        raise ConfigError(f"optimizer: 'betas'/'eps' do not apply to {config.name}")
    return OPTIMIZERS[config.name](groups, **options)


def build_schedule(config: SchedulerConfig, ratio: float = 1.0) -> Any:
    options = config.model_dump(exclude={"name"}, exclude_none=True)
    try:
        schedule = SCHEDULES[config.name](**options)
    except TypeError as error:
        raise ConfigError(
            f"scheduler: {config.name!r} does not take these fields: {error}"
        ) from None
    return schedule.scaled(ratio) if ratio != 1.0 else schedule


def _build_named(kind: str, spec: dict[str, dict[str, Any] | None], *args: Any) -> list[Any]:
    """Algorithms, callbacks and loggers come from their packages' registries."""
    if not spec:
        return []
    if kind == "algorithms":
        from tessera.algorithms import build_algorithms

        return build_algorithms(spec)
    if kind == "callbacks":
        from tessera.callbacks import build_callbacks

        return build_callbacks(spec)
    from tessera.loggers import build_loggers

    return build_loggers(spec, *args)


def build_trainer(
    config: RunConfig, rank: int | None = None, world_size: int | None = None, write: bool = True
) -> tuple[Trainer, RunFolder]:
    """Build every object the run file names and a Trainer that will run it.

    Under a launcher (torchrun, srun, ...) this joins the process group first; rank and
    world size then come from it (explicit values are for tests of data splitting).
    """
    parallel = config.parallelism
    info = distributed.start(
        parallel.backend, parallel.timeout, config.device, need_group=parallel.strategy == "fsdp"
    )
    rank = info.rank if rank is None else rank
    world_size = info.world_size if world_size is None else world_size
    sharded = info.backend is not None and parallel.strategy == "fsdp"
    folder = prepare_run_folder(config, write=write and rank == 0)
    torch.manual_seed(config.seed)  # model initialisation is seeded too
    model = build_model(config)
    data = build_data(config, rank, world_size)
    optimizer = build_optimizer(config.optimizer, model)
    ratio = config.scale_schedule_ratio
    schedulers = []
    if config.scheduler is not None:
        schedulers.append(ScheduledLR(optimizer, build_schedule(config.scheduler, ratio)))
    # Every rank builds the same loggers (they write on rank 0 only), so every rank's
    # checkpointed callback list matches and any rank can resume from another's state.
    loggers = _build_named("loggers", config.loggers, folder.root)
    trainer = Trainer(
        model=model,
        train_dataloader=data.train,
        eval_dataloaders=data.eval,
        max_duration=Time.coerce(config.max_duration, "max_duration") * ratio,
        eval_interval=config.eval_interval,
        optimizers=optimizer,
        schedulers=schedulers,
        algorithms=_build_named("algorithms", config.algorithms),
        callbacks=[
            *_parallel_callbacks(config, info, folder, sharded),
            *_build_named("callbacks", config.callbacks),
        ],
        loggers=loggers,
        precision=config.precision,
        device=info.device,
        device_train_microbatch_size=config.device_train_microbatch_size,
        seed=config.seed,
        deterministic=config.deterministic,
        run_name=config.name,
        run_dir=folder.root,
        save_folder=folder.checkpoints if config.save_interval is not None else None,
        save_interval=None if sharded else config.save_interval,  # sharded: all ranks save
        keep_last=config.keep_last,
        autoresume=config.autoresume and not sharded,
        load_path=None if sharded else config.load_path,
        rank=rank,
        world_size=world_size,
        profile=config.profile,
    )
    if sharded:
        autoresume = folder.checkpoints if config.autoresume else None
        sharded_checkpoint.resume(trainer, autoresume, config.load_path)
    trainer.logger.log_hyperparameters(config.model_dump(mode="json"))
    return trainer, folder


def _parallel_callbacks(
    config: RunConfig, info: distributed.ProcessInfo, folder: RunFolder, sharded: bool
) -> list[Any]:
    """The model wrapper (DDP/FSDP2) and, under FSDP, the sharded checkpoint saver."""
    if info.backend is None:
        return []
    parallel = config.parallelism
    options = parallel.model_dump(exclude={"strategy", "backend", "timeout"})
    callbacks: list[Any] = [distributed.ParallelWrapper(parallel.strategy, info, options)]
    if sharded and config.save_interval is not None:
        callbacks.append(
            sharded_checkpoint.ShardedCheckpointSaver(
                folder.checkpoints,
                config.save_interval,
                config.keep_last,
                async_save=parallel.async_checkpoint,
            )
        )
    return callbacks
