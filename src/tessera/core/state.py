"""`State`: everything a run is made of, handed to every algorithm and callback.

The state owns the time arithmetic that needs the data: converting a `Time` in one unit into
another (epochs to batches needs the batches per epoch), and the fraction of the run done.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tessera.core.determinism import load_rng_state, rng_state
from tessera.core.errors import CheckpointError, ConfigError
from tessera.core.export import misfit
from tessera.core.model import TrainableModel, unwrap
from tessera.core.precision import Precision
from tessera.core.resumable import resumable_part
from tessera.core.time import Time, Timestamp, TimeUnit

if TYPE_CHECKING:  # torchmetrics is slow to import; models import it when they build metrics
    from torchmetrics import Metric

STATE_FORMAT = 1  # the layout of `State.state_dict()` in checkpoints


@dataclass
class Rollback:
    """A request to return to the newest good checkpoint at or before `before_batch`."""

    before_batch: int
    lr_factor: float = 1.0
    reason: str = ""


@dataclass
class State:
    """The mutable state of one training run."""

    model: nn.Module
    max_duration: Time
    device: torch.device
    precision: Precision = Precision.FP32
    optimizers: list[torch.optim.Optimizer] = field(default_factory=list)
    schedulers: list[Any] = field(default_factory=list)
    scaler: torch.amp.GradScaler = field(
        default_factory=lambda: torch.amp.GradScaler("cpu", enabled=False)
    )
    train_dataloader: Iterable[Any] | None = None
    eval_dataloaders: dict[str, Iterable[Any]] = field(default_factory=dict)
    batches_per_epoch: int | None = None
    samples_per_batch: int | None = None
    timestamp: Timestamp = field(default_factory=Timestamp)
    microbatch_size: int | None = None
    seed: int = 0
    run_name: str = "run"
    run_dir: Path | None = None
    rank: int = 0
    world_size: int = 1
    algorithms: list[Any] = field(default_factory=list)
    callbacks: list[Any] = field(default_factory=list)
    # The batch being trained on, its outputs and loss (set by the trainer, changeable by
    # algorithms at the matching events).
    batch: Any = None
    outputs: Any = None
    loss: torch.Tensor | None = None
    batch_loss: torch.Tensor | None = None  # the full batch's mean loss, detached
    eval_metrics: dict[str, dict[str, Metric]] = field(default_factory=dict)
    eval_results: dict[str, dict[str, float]] = field(default_factory=dict)
    last_batch_samples: int = 0
    last_batch_tokens: int = 0
    stop_reason: str | None = None
    skip_step: bool = False  # set through skip_optimizer_step(); reset every batch
    rollback: Rollback | None = None  # set through request_rollback()

    @property
    def unwrapped_model(self) -> TrainableModel:
        """The model without DDP/FSDP/compile wrappers (what checkpoints save)."""
        return unwrap(self.model)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.optimizers[0]

    def request_stop(self, reason: str) -> None:
        """Ask the trainer to end the run after the current batch (early stopping)."""
        self.stop_reason = reason

    def skip_optimizer_step(self) -> None:
        """Ask the trainer not to step the optimizers for the current batch (called at
        BEFORE_OPTIMIZER_STEP; the gradients are dropped, the batch still counts)."""
        self.skip_step = True

    def request_rollback(self, before_batch: int, lr_factor: float = 1.0, reason: str = "") -> None:
        """Ask the trainer, after this batch, to restore the newest good checkpoint at or before
        `before_batch`, keep the clock and data stream going (skipping the batches since), and
        scale the learning rates by `lr_factor`."""
        self.rollback = Rollback(before_batch, lr_factor, reason)

    # -- checkpointing ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimizer, schedules, RNGs, data."""
        data = resumable_part(self.train_dataloader)
        return {
            "format_version": STATE_FORMAT,
            "run_name": self.run_name,
            "seed": self.seed,
            "timestamp": self.timestamp.state_dict(),
            "model": self.unwrapped_model.state_dict(),
            "optimizers": [optimizer.state_dict() for optimizer in self.optimizers],
            "schedulers": [scheduler.state_dict() for scheduler in self.schedulers],
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "data": data.state_dict(self.timestamp.sample_in_epoch) if data else None,
            "algorithms": [algorithm.state_dict() for algorithm in self.algorithms],
            "callbacks": [callback.state_dict() for callback in self.callbacks],
            "microbatch_size": self.microbatch_size,
            "stop_reason": self.stop_reason,  # an early stop stays final across reruns
        }

    def load_state_dict(self, state: dict[str, Any], source: str = "checkpoint") -> None:
        load_model_state(self.unwrapped_model, state["model"], source)
        # The clock first: time-aware schedulers recompute learning rates from it.
        self.timestamp = Timestamp.from_state_dict(state["timestamp"])
        for optimizer, saved in zip(self.optimizers, state["optimizers"]):
            _check_same_optimizer(optimizer, saved, source)
        _load_each(self.optimizers, state["optimizers"], "optimizers", source)
        _load_each(self.schedulers, state["schedulers"], "schedulers", source)
        _load_each(self.algorithms, state["algorithms"], "algorithms", source)
        _load_each(self.callbacks, state["callbacks"], "callbacks", source)
        if state["scaler"]:  # empty for a disabled scaler
            self.scaler.load_state_dict(state["scaler"])
        data = resumable_part(self.train_dataloader)
        if data is not None and state["data"] is not None:
            data.load_state_dict(state["data"])
        if state.get("microbatch_size"):
            self.microbatch_size = state["microbatch_size"]
        self.stop_reason = state.get("stop_reason")
        load_rng_state(state["rng"])

    # -- time arithmetic -------------------------------------------------------------------

    def resolve(self, time: Time, field_name: str = "time") -> Time:
        """Turn a 'dur' fraction into a concrete time in the unit of max_duration.

        A fraction of an epoch becomes batches, since epochs are whole numbers.
        """
        if time.unit != TimeUnit.DURATION:
            return time
        value = time.value * self.max_duration.value
        unit = self.max_duration.unit
        if unit == TimeUnit.EPOCH and value != int(value):
            return Time(round(value * self._batches_per_epoch(field_name)), TimeUnit.BATCH)
        return Time(round(value), unit)

    def position(self, unit: TimeUnit) -> float:
        """Where training is now, in `unit` (epochs are fractional within an epoch)."""
        ts = self.timestamp
        if unit == TimeUnit.EPOCH:
            per_epoch = self.batches_per_epoch or 0
            fraction = ts.batch_in_epoch / per_epoch if per_epoch else 0.0
            return ts.epoch + min(fraction, 1.0)
        if unit == TimeUnit.DURATION:
            return self.progress()
        return float(ts.get(unit))

    def progress(self) -> float:
        """The fraction of max_duration done, in [0, 1]."""
        total = self.resolve(self.max_duration)
        if total.value == 0:
            return 1.0
        return min(self.position(total.unit) / total.value, 1.0)

    def to_unit(self, time: Time, unit: TimeUnit, field_name: str = "time") -> float:
        """Express `time` in `unit`, converting through batches where the data allows."""
        time = self.resolve(time, field_name)
        if time.unit == unit:
            return float(time.value)
        batches = self._to_batches(time, field_name)
        if unit == TimeUnit.BATCH:
            return batches
        if unit == TimeUnit.EPOCH:
            return batches / self._batches_per_epoch(field_name)
        if unit == TimeUnit.SAMPLE:
            return batches * self._samples_per_batch(field_name)
        raise ConfigError(
            f"{field_name}: cannot convert {time} to tokens before the run knows how many "
            "tokens a batch holds; give it in tokens ('tok') or in another unit"
        )

    @property
    def epoch_complete(self) -> bool:
        """Whether the current epoch's last batch has been trained (known lengths only)."""
        per_epoch = self.batches_per_epoch
        return bool(per_epoch) and self.timestamp.batch_in_epoch >= per_epoch

    def check_token_unit(self, time: Time, field_name: str) -> None:
        """Refuse a time in tokens once it is clear the batches carry none."""
        if time.unit == TimeUnit.TOKEN and self.timestamp.batch > 0 and not self.timestamp.token:
            raise ConfigError(
                f"{field_name}: {time} counts tokens, but this model's batches report no tokens; "
                "give it in epochs ('ep'), batches ('ba') or samples ('sp')"
            )

    def is_done(self) -> bool:
        total = self.resolve(self.max_duration, "max_duration")
        self.check_token_unit(total, "max_duration")
        return self.position(total.unit) >= total.value

    def _to_batches(self, time: Time, field_name: str) -> float:
        if time.unit == TimeUnit.BATCH:
            return float(time.value)
        if time.unit == TimeUnit.EPOCH:
            return time.value * self._batches_per_epoch(field_name)
        if time.unit == TimeUnit.SAMPLE:
            return math.ceil(time.value / self._samples_per_batch(field_name))
        raise ConfigError(
            f"{field_name}: {time} is in tokens, which cannot be converted to batches here; "
            "use the same unit as the time it is compared with"
        )

    def _batches_per_epoch(self, field_name: str) -> int:
        if not self.batches_per_epoch:
            raise ConfigError(
                f"{field_name}: converting epochs needs a dataloader with a known length; "
                "give the time in batches ('ba') or samples ('sp') instead"
            )
        return self.batches_per_epoch

    def _samples_per_batch(self, field_name: str) -> int:
        if not self.samples_per_batch:
            raise ConfigError(
                f"{field_name}: converting samples needs a known batch size; "
                "give the time in batches ('ba') or epochs ('ep') instead"
            )
        return self.samples_per_batch


def load_model_state(model: torch.nn.Module, tensors: dict[str, Any], source: str) -> None:
    """`model.load_state_dict(tensors)`, or a CheckpointError naming each tensor that does not
    fit and both shapes (a resume into a model of another shape)."""
    details = misfit(model.state_dict(), tensors, "checkpoint")
    if details:
        raise CheckpointError(
            f"{source} does not fit this model ({details}); it was saved from a model of "
            "another shape: resume with the model settings it was trained with, or start a new "
            "run (another name, or autoresume=false)"
        )
    try:
        model.load_state_dict(tensors)
    except RuntimeError as error:
        raise CheckpointError(f"{source} does not fit this model: {error}") from None


def _check_same_optimizer(optimizer: Any, saved: Any, source: str) -> None:
    """Refuse optimizer state saved by another kind of optimizer (SGD's into AdamW's): torch
    would load it and fail at the first step, or quietly train with foreign settings."""
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not groups or not isinstance(groups[0], dict) or not optimizer.param_groups:
        return
    theirs = set(groups[0]) - {"params", "param_names"}
    ours = set(optimizer.param_groups[0]) - {"params", "param_names"}
    if theirs - ours and ours - theirs:  # a version of the same optimizer only adds settings
        raise CheckpointError(
            f"{source} holds the state of another optimizer (its settings: "
            f"{', '.join(sorted(theirs - ours))}; this run's {type(optimizer).__name__} has "
            f"{', '.join(sorted(ours - theirs))}); resume with the optimizer it was saved with, "
            "or start a new run (another name, or autoresume=false)"
        )


def _load_each(objects: list[Any], states: list[Any], kind: str, source: str) -> None:
    if len(objects) != len(states):
        raise CheckpointError(
            f"{source} holds {len(states)} {kind} but this run has {len(objects)}; resume with "
            "the same configuration"
        )
    for obj, obj_state in zip(objects, states):
        obj.load_state_dict(obj_state)
