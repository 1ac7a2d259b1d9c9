"""`Trainer`: a whole training run from Python, the same run a recipe describes.

The constructor assembles the run in a fixed order: settings (validated like a recipe) →
process group and device → run folder → optimizers, schedules, callbacks, loggers (the YAML
defaults where none are given) → `State` and `Engine` → the INIT event (model surgery) →
`parallelize` (activation checkpointing, compile, DDP/FSDP) → resume from the newest valid
checkpoint. `fit()` then runs the loop: it is split into small steps (fetch a batch, forward and
backward per microbatch, optimizer step) and fires an `Event` at each point; every method and
feature attaches there, and the loop names none of them.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from tessera.core import world
from tessera.core.algorithm import Algorithm
from tessera.core.callback import Callback
from tessera.core.checkpoint_saver import CheckpointSaver
from tessera.core.checkpointer import Checkpointer, FileCheckpointer
from tessera.core.component import build_config
from tessera.core.determinism import (
    configure_deterministic_mode,
    load_rng_state,
    preserved_rng,
    rng_state,
    seed_everything,
)
from tessera.core.engine import Engine
from tessera.core.evaluator import Evaluator, PeriodicEvaluation
from tessera.core.event import Event
from tessera.core.logger import Logger, LoggerDestination
from tessera.core.microbatch import is_out_of_memory, move_to_device, split_batch
from tessera.core.model import TrainableModel
from tessera.core.precision import Precision, autocast, check_precision, make_grad_scaler
from tessera.core.resumable import resumable_part
from tessera.core.state import State
from tessera.core.time import Time
from tessera.parallel.config import CompileConfig, ParallelismConfig
from tessera.parallel.parallelize import parallelize
from tessera.parallel.process_group import start, stop
from tessera.trainer import assembly
from tessera.trainer.resume import say_already_complete, starting_point
from tessera.trainer.rollback import RollbackHandler
from tessera.trainer.run_folder import RunFolder
from tessera.trainer.settings import DEFAULT_CALLBACKS, DEFAULT_LOGGERS, TrainerSettings

log = logging.getLogger(__name__)

_D = {name: field.default for name, field in TrainerSettings.model_fields.items()}


class Trainer:
    """Trains `model` on `train_data` for `max_duration` ("2ep", "1000ba", "1e8tok").

    Every keyword has the default a recipe has (`tessera.trainer.settings`). `callbacks=None`
    and `loggers=None` mean the default monitors and loggers; pass `[]` for none. The run
    folder `run_dir/name` receives checkpoints, metrics and the final model; `run_dir=None`
    trains without one.
    """

    def __init__(
        self,
        model: TrainableModel,
        train_data: Iterable[Any],
        max_duration: Time | str | int,
        *,
        eval_data: dict[str, Iterable[Any]] | Iterable[Any] | None = None,
        optimizers: Any = None,
        schedulers: Any = None,
        algorithms: Sequence[Algorithm] = (),
        callbacks: Sequence[Callback] | None = None,
        loggers: Sequence[LoggerDestination] | None = None,
        checkpointer: Checkpointer | None = None,
        name: str = _D["name"],
        run_dir: str | Path | None = _D["run_dir"],
        seed: int = _D["seed"],
        deterministic: bool = _D["deterministic"],
        eval_interval: Time | str | int = _D["eval_interval"],
        save_interval: Time | str | int | None = _D["save_interval"],
        keep_last: int | None = _D["keep_last"],
        autoresume: bool | str = _D["autoresume"],
        load_path: str | Path | None = _D["load_path"],
        precision: Precision | str = _D["precision"],
        device: torch.device | str | None = _D["device"],
        device_train_microbatch_size: int | str | None = _D["device_train_microbatch_size"],
        scale_schedule_ratio: float = _D["scale_schedule_ratio"],
        profile: bool = _D["profile"],
        parallelism: ParallelismConfig | dict[str, Any] | None = None,
        activation_checkpointing: bool | str = _D["activation_checkpointing"],
        compile: CompileConfig | dict[str, Any] | None = _D["compile"],
    ) -> None:
        settings = build_config(
            TrainerSettings,
            {
                "name": name,
                "run_dir": None if run_dir is None else str(run_dir),
                "max_duration": max_duration,
                "seed": seed,
                "deterministic": deterministic,
                "eval_interval": eval_interval,
                "save_interval": save_interval,
                "keep_last": keep_last,
                "autoresume": autoresume,
                "load_path": None if load_path is None else str(load_path),
                "precision": precision,
                "device": None if device is None else str(device),
                "device_train_microbatch_size": device_train_microbatch_size,
                "scale_schedule_ratio": scale_schedule_ratio,
                "profile": profile,
                "parallelism": parallelism if parallelism is not None else {},
                "activation_checkpointing": activation_checkpointing,
                "compile": compile,
            },
        )
        assert isinstance(settings, TrainerSettings)
        self.settings = settings
        seed_everything(settings.seed)
        if settings.deterministic:
            configure_deterministic_mode()
        strategy = settings.parallelism.strategy
        self.process = start(
            settings.parallelism.backend,
            settings.parallelism.timeout,
            settings.device,
            need_group=strategy == "fsdp",
        )
        device = self.process.device
        check_precision(settings.precision, device)
        self.folder = None
        if settings.run_dir is not None:
            root = Path(settings.run_dir).expanduser().absolute() / settings.name
            self.folder = RunFolder(root)
        if self.folder is not None and self.process.rank == 0:
            self.folder.create()
        world.barrier()
        model = model.to(device)
        ratio = settings.scale_schedule_ratio
        optimizer_list = assembly.optimizers(optimizers, model)
        scheduler_list = assembly.schedulers(schedulers, optimizer_list, ratio)
        eval_sets = assembly.as_eval_dict(eval_data)
        run_dir_path = self.folder.root if self.folder else None
        if callbacks is None:
            callbacks = assembly.registered("callbacks", DEFAULT_CALLBACKS)
        if loggers is None:
            spec = {k: v for k, v in DEFAULT_LOGGERS.items() if run_dir_path or k != "jsonl"}
            loggers = assembly.registered("loggers", spec, run_dir=run_dir_path)

        self.state = state = State(
            model=model,
            max_duration=settings.max_duration * ratio,
            device=device,
            precision=settings.precision,
            optimizers=optimizer_list,
            schedulers=scheduler_list,
            scaler=make_grad_scaler(settings.precision, device),
            train_dataloader=train_data,
            eval_dataloaders=eval_sets,
            batches_per_epoch=assembly.length(train_data),
            samples_per_batch=assembly.batch_size(train_data, self.process.world_size),
            microbatch_size=assembly.fixed_microbatch(settings.device_train_microbatch_size),
            seed=settings.seed,
            run_name=settings.name,
            run_dir=run_dir_path,
            rank=self.process.rank,
            world_size=self.process.world_size,
        )
        self.auto_microbatch = settings.device_train_microbatch_size == "auto"
        sharded = strategy == "fsdp" and self.process.backend is not None
        self.checkpointer = checkpointer or assembly.default_checkpointer(
            self.folder, settings, sharded
        )
        self.evaluator = Evaluator(
            eval_sets,
            device=device,
            precision=settings.precision,
            microbatch_size=state.microbatch_size,
        )
        internal: list[Callback] = []
        if eval_sets:
            internal.append(PeriodicEvaluation(self.evaluator, settings.eval_interval, self._fire))
        if self.checkpointer is not None:
            if settings.save_interval is not None:
                internal.append(CheckpointSaver(self.checkpointer, settings.save_interval))
            internal.append(RollbackHandler(self.checkpointer))
        state.algorithms = list(algorithms)
        state.callbacks = [*callbacks, *loggers, *internal]
        self.logger = Logger(loggers)
        self.engine = Engine(state, self.logger, algorithms, state.callbacks, settings.profile)
        state.algorithms = self.engine.algorithms
        for scheduler in state.schedulers:
            bind_state = getattr(scheduler, "bind_state", None)
            if callable(bind_state):  # time-aware schedulers read positions from the state
                bind_state(state)
        self.engine.run_event(Event.INIT)
        self.parallel = parallelize(
            state.model,
            settings.parallelism,
            activation_checkpointing=settings.activation_checkpointing,
            compile=settings.compile,
            info=self.process,
            optimizers=state.optimizers,
        )
        state.model = self.parallel.model
        self.resumed_from: Path | None = None
        self._resume()

    # -- assembly ----------------------------------------------------------------------------

    def _resume(self) -> None:
        """Continue from where `autoresume` and `load_path` say (`tessera.trainer.resume`)."""
        settings = self.settings
        path = starting_point(
            self.checkpointer, self.folder, settings.autoresume, settings.load_path
        )
        if path is None:
            return
        checkpointer = self.checkpointer or FileCheckpointer(path.parent)
        checkpointer.load(self.state, path)
        if self.state.rank == 0:
            log.warning("resumed from %s at %s", path, self.state.timestamp)
        self.resumed_from = path
        self.engine.run_event(Event.AFTER_LOAD)

    def _fire(self, event: Event) -> None:
        self.engine.run_event(event)

    # -- checkpoints and export -------------------------------------------------------------

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the run now (every rank calls this)."""
        if self.checkpointer is None:
            raise ValueError("this trainer has no run folder (run_dir=None) to checkpoint into")
        return self.checkpointer.save(self.state)

    def export(self, folder: str | Path) -> Path | None:
        """Write the trained weights (safetensors) and config (json) for use without Tessera."""
        checkpointer = self.checkpointer or FileCheckpointer(Path(folder).parent)
        return checkpointer.export(self.state, folder)

    # -- the loop --------------------------------------------------------------------------

    def fit(self) -> None:
        """Train to `max_duration`; with a run folder, end by exporting `final/`."""
        state, engine = self.state, self.engine
        if (state.is_done() or state.stop_reason is not None) and state.rank == 0:
            say_already_complete(state, self.folder)
        try:
            engine.run_event(Event.FIT_START)
            while not state.is_done() and state.stop_reason is None:
                self._train_epoch()
            engine.run_event(Event.FIT_END)
            if self.folder is not None:
                self.export(self.folder.final)
        except BaseException:
            try:  # the run's own error is the one to show, not a second one while closing
                engine.close()
            except Exception as error:
                log.warning("while closing after the error below: %s", error)
            raise
        engine.close()
        world.barrier()

    def close(self) -> None:
        """Leave the process group if this trainer joined it (at the end of a script)."""
        if self.process.created_group:
            stop()

    def _train_epoch(self) -> None:
        state, engine = self.state, self.engine
        data = resumable_part(state.train_dataloader)
        if data is not None:
            data.set_epoch(state.timestamp.epoch)
        state.model.train()
        engine.run_event(Event.EPOCH_START)
        for batch in self._batches(data is not None):
            self._train_batch(batch)
            finishing_epoch = state.epoch_complete  # let the epoch end properly
            if state.stop_reason is not None or (state.is_done() and not finishing_epoch):
                break
        else:
            if state.timestamp.batch_in_epoch == 0:
                raise ValueError("the training data yielded no batches")
            state.timestamp = state.timestamp.after_epoch()
            engine.run_event(Event.EPOCH_END)
            engine.run_event(Event.EPOCH_CHECKPOINT)

    def _batches(self, resumable: bool) -> Iterator[Any]:
        with preserved_rng():  # a DataLoader may seed its workers from the global RNG
            loader = iter(self.state.train_dataloader)  # type: ignore[arg-type]
        skip = self.state.timestamp.batch_in_epoch
        if skip and not resumable:  # the data cannot seek: read and drop the seen batches
            loader = itertools.islice(loader, skip, None)
        return loader

    def _train_batch(self, batch: Any) -> None:
        state, engine = self.state, self.engine
        state.batch = move_to_device(batch, state.device)
        model = state.unwrapped_model
        # Counts are global: every rank reads an equal share of the batch (the data position
        # and 'sp'/'tok' durations mean the same on any number of processes).
        samples = model.num_samples(state.batch) * state.world_size
        engine.run_event(Event.BATCH_START)
        engine.run_event(Event.AFTER_DATALOADER)
        tokens = model.num_tokens(state.batch) * state.world_size  # after any batch change
        state.batch_loss = self._forward_backward_with_retry()
        state.skip_step = False
        engine.run_event(Event.BEFORE_OPTIMIZER_STEP)
        if not state.skip_step:
            self._optimizer_step()
        engine.run_event(Event.AFTER_OPTIMIZER_STEP)
        for optimizer in state.optimizers:
            optimizer.zero_grad(set_to_none=True)
        # Every rank saw a different part of the batch: report the mean over all of them.
        state.batch_loss = world.all_reduce_mean(state.batch_loss)
        state.last_batch_samples, state.last_batch_tokens = samples, tokens
        state.timestamp = state.timestamp.after_batch(samples, tokens)
        for scheduler in state.schedulers:  # the next batch's rate, from the advanced clock
            scheduler.step()
        engine.run_event(Event.BATCH_END)
        engine.run_event(Event.BATCH_CHECKPOINT)

    def _forward_backward_with_retry(self) -> torch.Tensor:
        """Run all microbatches; under 'auto', halve the microbatch on OOM and redo the batch."""
        state = self.state
        if not self.auto_microbatch:
            return self._forward_backward(state.batch)
        full_batch, rng = state.batch, rng_state()  # the retry replays the same random draws
        while True:
            try:
                return self._forward_backward(full_batch)
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                self._shrink_microbatch(full_batch, error)
                load_rng_state(rng)
                state.batch = full_batch

    def _shrink_microbatch(self, batch: Any, error: BaseException) -> None:
        state = self.state
        for optimizer in state.optimizers:
            optimizer.zero_grad(set_to_none=True)
        state.outputs = state.loss = None
        current = state.microbatch_size or state.unwrapped_model.num_samples(batch)
        if current <= 1:
            raise RuntimeError(
                "out of memory with a microbatch of 1 sample; use a smaller model, a lower "
                "precision or a device with more memory"
            ) from error
        state.microbatch_size = self.evaluator.microbatch_size = current // 2
        if state.device.type == "cuda":
            torch.cuda.empty_cache()
        log.warning("out of memory: microbatch size lowered to %d", state.microbatch_size)

    def _forward_backward(self, batch: Any) -> torch.Tensor:
        state, engine = self.state, self.engine
        model = state.unwrapped_model
        total = model.num_samples(batch)
        microbatches = split_batch(batch, state.microbatch_size or total)
        batch_loss = torch.zeros((), device=state.device)
        for index, microbatch in enumerate(microbatches):
            state.batch = microbatch
            last = index == len(microbatches) - 1
            with self.parallel.gradient_sync(enabled=last):
                engine.run_event(Event.BEFORE_FORWARD)
                with autocast(state.precision, state.device):
                    state.outputs = state.model(state.batch)
                engine.run_event(Event.AFTER_FORWARD)
                engine.run_event(Event.BEFORE_LOSS)
                with autocast(state.precision, state.device):
                    state.loss = model.loss(state.outputs, state.batch)
                engine.run_event(Event.AFTER_LOSS)
                weighted = state.loss
                if len(microbatches) > 1:  # each microbatch's share of the batch's mean loss
                    weighted = state.loss * (model.num_samples(state.batch) / total)
                batch_loss += weighted.detach()
                engine.run_event(Event.BEFORE_BACKWARD)
                state.scaler.scale(weighted).backward()
                engine.run_event(Event.AFTER_BACKWARD)
        state.batch = batch
        for optimizer in state.optimizers:
            state.scaler.unscale_(optimizer)
        return batch_loss

    def _optimizer_step(self) -> None:
        state = self.state
        for optimizer in state.optimizers:
            if getattr(optimizer, "needs_closure", False):
                state.scaler.step(optimizer, self._closure)
            else:
                state.scaler.step(optimizer)
        state.scaler.update()

    def _closure(self) -> torch.Tensor:
        """Recompute loss and gradients for the current batch (for SAM-style optimizers)."""
        for optimizer in self.state.optimizers:
            optimizer.zero_grad(set_to_none=True)
        return self._forward_backward(self.state.batch)

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(self) -> dict[str, dict[str, float]]:
        """Run every evaluation set once; results go to state.eval_results and the loggers."""
        from tessera.core.evaluator import metric_names

        results = self.evaluator.evaluate(self.state.model, self.state, self._fire)
        self.logger.log_metrics(metric_names(results), step=self.state.timestamp.batch)
        return results
