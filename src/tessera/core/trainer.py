"""The training loop: fit for a duration, evaluate at an interval, checkpoint, resume.

The loop is split into small steps (fetch batch, forward/backward per microbatch, optimizer
step, evaluate) and fires an `Event` at each point; every method and feature attaches there.
The trainer knows no algorithm or callback by name.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from tessera.core import checkpoint
from tessera.core.algorithm import Algorithm
from tessera.core.callback import Callback
from tessera.core.checkpoint_saver import CheckpointSaver, PeriodicEvaluation
from tessera.core.data import resumable_part
from tessera.core.determinism import configure_deterministic_mode, seed_everything
from tessera.core.engine import Engine
from tessera.core.errors import ConfigError
from tessera.core.event import Event
from tessera.core.export import export_model
from tessera.core.logger import Logger, LoggerDestination
from tessera.core.microbatch import is_out_of_memory, move_to_device, split_batch
from tessera.core.model import TrainableModel
from tessera.core.precision import (
    Precision,
    autocast,
    check_precision,
    make_grad_scaler,
)
from tessera.core.state import State
from tessera.core.time import Time

log = logging.getLogger(__name__)


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Trainer:
    """Trains a `TrainableModel` for `max_duration` ("2ep", "1000ba", "1e8tok").

    device_train_microbatch_size: None (whole batch), an int, or "auto" (halve on OOM).
    save_folder + save_interval: checkpoints; autoresume: continue from the newest valid one.
    """

    def __init__(
        self,
        model: TrainableModel,
        train_dataloader: Iterable[Any],
        max_duration: Time | str | int,
        optimizers: torch.optim.Optimizer | Sequence[torch.optim.Optimizer] | None = None,
        schedulers: Any = None,
        eval_dataloaders: dict[str, Iterable[Any]] | Iterable[Any] | None = None,
        eval_interval: Time | str | int = "1ep",
        algorithms: Sequence[Algorithm] = (),
        callbacks: Sequence[Callback] = (),
        loggers: Sequence[LoggerDestination] = (),
        precision: Precision | str = Precision.FP32,
        device: torch.device | str | None = None,
        device_train_microbatch_size: int | str | None = None,
        seed: int = 0,
        deterministic: bool = False,
        run_name: str = "run",
        run_dir: str | Path | None = None,
        save_folder: str | Path | None = None,
        save_interval: Time | str | int | None = None,
        keep_last: int | None = None,
        autoresume: bool = False,
        load_path: str | Path | None = None,
        rank: int = 0,
        world_size: int = 1,
        profile: bool = False,
    ) -> None:
        seed_everything(seed)
        if deterministic:
            configure_deterministic_mode()
        device = torch.device(device) if device is not None else default_device()
        precision = Precision.parse(precision)
        check_precision(precision, device)
        self.auto_microbatch = device_train_microbatch_size == "auto"
        microbatch_size = _check_microbatch_size(device_train_microbatch_size)
        model = model.to(device)
        if optimizers is None:
            raise ConfigError("optimizers: the trainer needs an optimizer to train")
        optimizers = [optimizers] if isinstance(optimizers, torch.optim.Optimizer) else optimizers
        if isinstance(eval_dataloaders, dict):
            eval_dataloaders = dict(eval_dataloaders)
        elif eval_dataloaders is not None:
            eval_dataloaders = {"eval": eval_dataloaders}

        self.state = State(
            model=model,
            max_duration=Time.coerce(max_duration, "max_duration"),
            device=device,
            precision=precision,
            optimizers=list(optimizers),
            schedulers=_as_list(schedulers),
            scaler=make_grad_scaler(precision, device),
            train_dataloader=train_dataloader,
            eval_dataloaders=eval_dataloaders or {},
            batches_per_epoch=_length(train_dataloader),
            samples_per_batch=_batch_size(train_dataloader, world_size),
            microbatch_size=microbatch_size,
            seed=seed,
            run_name=run_name,
            run_dir=Path(run_dir) if run_dir is not None else None,
            rank=rank,
            world_size=world_size,
            train_metrics=model.metrics(train=True),
            eval_metrics={label: model.metrics(train=False) for label in eval_dataloaders or {}},
        )
        for metric in [
            *self.state.train_metrics.values(),
            *(m for ms in self.state.eval_metrics.values() for m in ms.values()),
        ]:
            metric.to(device)
        self.state.algorithms = list(algorithms)
        self.resumed_from: Path | None = None
        internal: list[Callback] = []
        if self.state.eval_dataloaders:
            internal.append(PeriodicEvaluation(self, eval_interval))
        if save_folder is not None and save_interval is not None:
            internal.append(CheckpointSaver(save_folder, save_interval, keep_last))
        self.state.callbacks = [*callbacks, *loggers, *internal]
        self.logger = Logger(loggers)
        self.engine = Engine(self.state, self.logger, algorithms, self.state.callbacks, profile)
        self.state.algorithms = self.engine.algorithms
        for scheduler in self.state.schedulers:
            bind_state = getattr(scheduler, "bind_state", None)
            if callable(bind_state):  # time-aware schedulers read positions from the state
                bind_state(self.state)
        self.engine.run_event(Event.INIT)
        self._load(save_folder if autoresume else None, load_path)

    # -- checkpoints -----------------------------------------------------------------------

    def _load(self, autoresume_folder: str | Path | None, load_path: str | Path | None) -> None:
        path = None
        if autoresume_folder is not None:
            path = checkpoint.latest_valid(autoresume_folder)
        if path is None and load_path is not None:
            path = Path(load_path)
        if path is None:
            return
        self.state.load_state_dict(checkpoint.load(path), source=f"checkpoint {path}")
        log.info("resumed from %s at %s", path, self.state.timestamp)
        self.resumed_from = path
        self.engine.run_event(Event.AFTER_LOAD)

    def save_checkpoint(self, folder: str | Path, keep_last: int | None = None) -> Path:
        ts = self.state.timestamp
        name = checkpoint.checkpoint_name(ts.epoch, ts.batch)
        return checkpoint.save(self.state.state_dict(), folder, name, keep_last)

    def export(self, folder: str | Path) -> Path:
        """Write the trained weights (safetensors) and config (json) for use without Tessera."""
        return export_model(self.state.unwrapped_model, folder)

    # -- the loop --------------------------------------------------------------------------

    def fit(self) -> None:
        state, engine = self.state, self.engine
        try:
            engine.run_event(Event.FIT_START)
            while not state.is_done() and state.stop_reason is None:
                self._train_epoch()
            engine.run_event(Event.FIT_END)
        finally:
            engine.close()

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
                raise ConfigError("the training dataloader yielded no batches")
            state.timestamp = state.timestamp.after_epoch()
            engine.run_event(Event.EPOCH_END)
            engine.run_event(Event.EPOCH_CHECKPOINT)

    def _batches(self, resumable: bool) -> Iterator[Any]:
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
        engine.run_event(Event.BEFORE_OPTIMIZER_STEP)
        self._optimizer_step()
        engine.run_event(Event.AFTER_OPTIMIZER_STEP)
        for optimizer in state.optimizers:
            optimizer.zero_grad(set_to_none=True)
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
        full_batch, rng = state.batch, torch.get_rng_state()
        while True:
            try:
                return self._forward_backward(full_batch)
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                self._shrink_microbatch(full_batch, error)
                torch.set_rng_state(rng)
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
        state.microbatch_size = current // 2
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
            sync = contextlib.nullcontext() if last else _no_sync(state.model)
            with sync:
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
                if state.scaler is not None:
                    weighted = state.scaler.scale(weighted)
                weighted.backward()
                engine.run_event(Event.AFTER_BACKWARD)
            self._update_train_metrics()
        state.batch = batch
        if state.scaler is not None:
            for optimizer in state.optimizers:
                state.scaler.unscale_(optimizer)
        return batch_loss

    def _update_train_metrics(self) -> None:
        state = self.state
        model = state.unwrapped_model
        with torch.no_grad():
            for metric in state.train_metrics.values():
                model.update_metric(state.batch, state.outputs, metric)

    def _optimizer_step(self) -> None:
        state = self.state
        for optimizer in state.optimizers:
            closure = None
            if getattr(optimizer, "needs_closure", False):
                closure = self._closure
            if state.scaler is not None:
                state.scaler.step(optimizer, closure) if closure else state.scaler.step(optimizer)
            else:
                optimizer.step(closure) if closure else optimizer.step()
        if state.scaler is not None:
            state.scaler.update()

    def _closure(self) -> torch.Tensor:
        """Recompute loss and gradients for the current batch (for SAM-style optimizers)."""
        for optimizer in self.state.optimizers:
            optimizer.zero_grad(set_to_none=True)
        return self._forward_backward(self.state.batch)

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(self) -> dict[str, dict[str, float]]:
        """Run every eval dataloader once; results go to state.eval_results and the logger."""
        state, engine = self.state, self.engine
        was_training = state.model.training
        state.model.eval()
        engine.run_event(Event.EVAL_START)
        results: dict[str, dict[str, float]] = {}
        for label, loader in state.eval_dataloaders.items():
            metrics = state.eval_metrics[label]
            for metric in metrics.values():
                metric.reset()
            with torch.no_grad():
                for batch in loader:
                    self._eval_batch(move_to_device(batch, state.device), metrics)
            results[label] = {name: float(metric.compute()) for name, metric in metrics.items()}
        state.eval_results = results
        self.logger.log_metrics(
            {
                f"metrics/{label}/{name}": value
                for label, values in results.items()
                for name, value in values.items()
            },
            step=state.timestamp.batch,
        )
        engine.run_event(Event.EVAL_END)
        state.model.train(was_training)
        return results

    def _eval_batch(self, batch: Any, metrics: dict[str, Any]) -> None:
        """Evaluate one batch, in microbatches when the training microbatch size is set."""
        state, engine = self.state, self.engine
        model = state.unwrapped_model
        for microbatch in split_batch(batch, state.microbatch_size or model.num_samples(batch)):
            state.batch = microbatch
            engine.run_event(Event.EVAL_BATCH_START)
            engine.run_event(Event.EVAL_BEFORE_FORWARD)
            with autocast(state.precision, state.device):
                state.outputs = model.eval_forward(state.batch)
            engine.run_event(Event.EVAL_AFTER_FORWARD)
            for metric in metrics.values():
                model.update_metric(state.batch, state.outputs, metric)
            engine.run_event(Event.EVAL_BATCH_END)


def _no_sync(model: torch.nn.Module) -> Any:
    """Skip the gradient all-reduce for all but the last microbatch (DDP); no-op otherwise."""
    no_sync = getattr(model, "no_sync", None)
    return no_sync() if callable(no_sync) else contextlib.nullcontext()


def _check_microbatch_size(value: int | str | None) -> int | None:
    if value is None or value == "auto":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ConfigError(
        f"device_train_microbatch_size: {value!r} is not accepted; give a positive integer, "
        "'auto', or leave it unset to train on whole batches"
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _length(loader: Iterable[Any]) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


def _batch_size(loader: Iterable[Any], world_size: int) -> int | None:
    batch_size = getattr(loader, "batch_size", None)
    return batch_size * world_size if isinstance(batch_size, int) else None
