"""Learning-rate schedules whose durations are training `Time`s.

A schedule maps the run's position to a multiplier of each parameter group's initial learning
rate. `ScheduledLR` applies one to an optimizer; it is a regular `torch` LR scheduler, stepped
once per batch, so its position is read from the training `State` (bound by the trainer).
Positions are measured in batches, or in tokens when max_duration is in tokens.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError
from tessera.core.time import Time, TimeUnit, TimeValue

if TYPE_CHECKING:
    from tessera.core.state import State


def _time(value: Time | str | int, field: str) -> Time:
    return Time.coerce(value, field)


class Schedule:
    """Base: subclasses implement `multiplier(t, state)` where t is the position."""

    time_fields: tuple[str, ...] = ()

    def __call__(self, state: State | None) -> float:
        if state is None:
            return self.multiplier(0.0, None)
        return self.multiplier(state.position(self._unit(state)), state)

    def multiplier(self, t: float, state: State | None) -> float:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def _unit(state: State) -> TimeUnit:
        return TimeUnit.TOKEN if state.max_duration.unit == TimeUnit.TOKEN else TimeUnit.BATCH

    def _span(self, time: Time, state: State | None, name: str) -> float:
        """A duration as a position in the schedule's unit (0 before the run is known)."""
        if state is None:
            return 0.0 if time.value == 0 else math.inf
        return state.to_unit(time, self._unit(state), f"scheduler.{name}")

    def scaled(self, ratio: float) -> Schedule:
        """The same schedule with every absolute time multiplied by `ratio`."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        for name in self.time_fields:
            value = getattr(self, name)
            if isinstance(value, Time):
                setattr(copy, name, value * ratio)
            elif isinstance(value, list):
                setattr(copy, name, [item * ratio for item in value])
        return copy


def _warmup(t: float, warmup: float) -> float | None:
    """The warm-up multiplier while warming up, else None."""
    if warmup > 0 and t < warmup:
        return t / warmup
    return None


class Constant(Schedule):
    def __init__(self, factor: float = 1.0) -> None:
        self.factor = factor

    def multiplier(self, t: float, state: State | None) -> float:
        return self.factor


class LinearWarmup(Schedule):
    """Linear from 0 to 1 over t_warmup, then constant."""

    time_fields = ("t_warmup",)

    def __init__(self, t_warmup: Time | str | int = "0.05dur") -> None:
        self.t_warmup = _time(t_warmup, "t_warmup")

    def multiplier(self, t: float, state: State | None) -> float:
        warm = _warmup(t, self._span(self.t_warmup, state, "t_warmup"))
        return 1.0 if warm is None else warm


class _WarmupThenDecay(Schedule):
    """Warm up linearly over t_warmup, then follow `decay(fraction)` until t_max."""

    time_fields = ("t_warmup", "t_max")

    def __init__(
        self, t_warmup: Time | str | int = "0ba", t_max: Time | str = "1dur", alpha_f: float = 0.0
    ) -> None:
        self.t_warmup, self.t_max = _time(t_warmup, "t_warmup"), _time(t_max, "t_max")
        self.alpha_f = alpha_f

    def decay(self, fraction: float) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def multiplier(self, t: float, state: State | None) -> float:
        warmup = self._span(self.t_warmup, state, "t_warmup")
        warm = _warmup(t, warmup)
        if warm is not None:
            return warm
        end = self._span(self.t_max, state, "t_max")
        fraction = min(max((t - warmup) / max(end - warmup, 1e-12), 0.0), 1.0)
        return self.alpha_f + (1 - self.alpha_f) * self.decay(fraction)


class Linear(_WarmupThenDecay):
    """Warm up, then linear from 1 to alpha_f at t_max."""

    def decay(self, fraction: float) -> float:
        return 1.0 - fraction


class CosineWarmup(_WarmupThenDecay):
    """Warm up linearly, then cosine decay from 1 to alpha_f at t_max."""

    def decay(self, fraction: float) -> float:
        return 0.5 * (1 + math.cos(math.pi * fraction))


class WarmupStableDecay(Schedule):
    """The trapezoid ("warmup-stable-decay"): warm up linearly over t_warmup, hold the peak,
    then decay linearly to alpha_f over the last t_decay before t_max. The long flat middle
    trains at the full rate for longer than a cosine; the short final decay ("cooldown") then
    takes most of the loss drop (Hägele et al. 2024; the modded-nanogpt speed runs)."""

    time_fields = ("t_warmup", "t_decay", "t_max")

    def __init__(
        self,
        t_warmup: Time | str | int = "0ba",
        t_decay: Time | str | int = "0.2dur",
        t_max: Time | str = "1dur",
        alpha_f: float = 0.0,
    ) -> None:
        self.t_warmup, self.t_decay = _time(t_warmup, "t_warmup"), _time(t_decay, "t_decay")
        self.t_max, self.alpha_f = _time(t_max, "t_max"), alpha_f

    def multiplier(self, t: float, state: State | None) -> float:
        warm = _warmup(t, self._span(self.t_warmup, state, "t_warmup"))
        if warm is not None:
            return warm
        end = self._span(self.t_max, state, "t_max")
        start = end - self._span(self.t_decay, state, "t_decay")
        if t <= start:
            return 1.0
        fraction = min((t - start) / max(end - start, 1e-12), 1.0)
        return 1.0 - (1.0 - self.alpha_f) * fraction


class Step(Schedule):
    """Multiply by gamma every step_size."""

    time_fields = ("step_size",)

    def __init__(self, step_size: Time | str | int, gamma: float = 0.1) -> None:
        self.step_size, self.gamma = _time(step_size, "step_size"), gamma

    def multiplier(self, t: float, state: State | None) -> float:
        size = self._span(self.step_size, state, "step_size")
        return self.gamma ** math.floor(t / size) if size > 0 and size != math.inf else 1.0


class MultiStep(Schedule):
    """Multiply by gamma at each milestone."""

    time_fields = ("milestones",)

    def __init__(self, milestones: Sequence[Time | str | int], gamma: float = 0.1) -> None:
        self.milestones = [_time(m, "milestones") for m in milestones]
        self.gamma = gamma

    def multiplier(self, t: float, state: State | None) -> float:
        passed = sum(t >= self._span(m, state, "milestones") for m in self.milestones)
        return self.gamma**passed


class Polynomial(_WarmupThenDecay):
    """Warm up, then (1 - fraction) ** power from 1 down to alpha_f."""

    def __init__(
        self,
        power: float = 2.0,
        t_warmup: Time | str | int = "0ba",
        t_max: Time | str = "1dur",
        alpha_f: float = 0.0,
    ) -> None:
        super().__init__(t_warmup, t_max, alpha_f)
        self.power = power

    def decay(self, fraction: float) -> float:
        return (1 - fraction) ** self.power


class InverseSquareRoot(Schedule):
    """Warm up linearly, then decay as sqrt(t_warmup / t) (the Transformer schedule)."""

    time_fields = ("t_warmup",)

    def __init__(self, t_warmup: Time | str | int = "1000ba") -> None:
        self.t_warmup = _time(t_warmup, "t_warmup")
        if self.t_warmup.value == 0:
            raise ConfigError("scheduler.t_warmup: inverse_sqrt needs a warm-up longer than 0")

    def multiplier(self, t: float, state: State | None) -> float:
        warmup = self._span(self.t_warmup, state, "t_warmup")
        warm = _warmup(t, warmup)
        return warm if warm is not None else math.sqrt(warmup / max(t, 1e-12))


class ScheduledLR(LRScheduler):
    """Sets each group's lr to its initial lr times `schedule(state)` after every batch."""

    def __init__(self, optimizer: Optimizer, schedule: Schedule) -> None:
        self.schedule = schedule
        self.training_state: State | None = None
        super().__init__(optimizer)

    def bind_state(self, state: State) -> None:
        """Read positions from this run's state (the trainer calls this)."""
        self.training_state = state
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr

    def get_lr(self) -> list[float]:  # type: ignore[override]
        factor = self.schedule(self.training_state)
        return [base * factor for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        # The position comes from the checkpointed timestamp; only the base lrs are ours.
        return {"base_lrs": list(self.base_lrs), "last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_lrs = list(state_dict["base_lrs"])
        self.last_epoch = state_dict["last_epoch"]
        if self.training_state is not None:
            self.bind_state(self.training_state)


SCHEDULES: dict[str, type[Schedule]] = {
    "constant": Constant,
    "linear_warmup": LinearWarmup,
    "linear": Linear,
    "cosine_warmup": CosineWarmup,
    "step": Step,
    "multistep": MultiStep,
    "polynomial": Polynomial,
    "inverse_sqrt": InverseSquareRoot,
    "warmup_stable_decay": WarmupStableDecay,
}


class SchedulerConfig(ComponentConfig):
    """The recipe's `scheduler:` section (and the trainer's default schedule)."""

    name: Literal[
        "constant",
        "linear_warmup",
        "linear",
        "cosine_warmup",
        "step",
        "multistep",
        "polynomial",
        "inverse_sqrt",
        "warmup_stable_decay",
    ] = Field("cosine_warmup", description="learning-rate schedule")
    t_warmup: TimeValue | None = Field(None, description="warm-up length (Time)")
    t_decay: TimeValue | None = Field(
        None, description="warmup_stable_decay: length of the final decay (Time, default 0.2dur)"
    )
    t_max: TimeValue | None = Field(None, description="end of the decay (Time, default 1dur)")
    alpha_f: float | None = Field(None, ge=0, description="final lr multiplier")
    step_size: TimeValue | None = Field(None, description="step schedule: time between drops")
    milestones: list[TimeValue] | None = Field(None, description="multistep: drop times")
    gamma: float | None = Field(None, gt=0, description="step/multistep: drop factor")
    power: float | None = Field(None, gt=0, description="polynomial: exponent")
    factor: float | None = Field(None, gt=0, description="constant: lr multiplier")

    @model_validator(mode="after")
    def _fields_of_schedule(self) -> SchedulerConfig:
        accepted = set(inspect.signature(SCHEDULES[self.name].__init__).parameters) - {"self"}
        given = {
            key
            for key in type(self).model_fields
            if key != "name" and getattr(self, key) is not None
        }
        wrong = sorted(given - accepted)
        if wrong:
            raise ValueError(
                f"{self.name!r} does not take {', '.join(wrong)}; it takes "
                f"{', '.join(sorted(accepted)) or 'no options'}"
            )
        missing = [
            key
            for key, parameter in inspect.signature(
                SCHEDULES[self.name].__init__
            ).parameters.items()
            if key != "self" and parameter.default is inspect.Parameter.empty and key not in given
        ]
        if missing:
            raise ValueError(f"{self.name!r} needs {', '.join(missing)}")
        return self

    def times(self) -> list[Time]:
        """Every time this schedule names (for unit checks against max_duration)."""
        found = [getattr(self, key) for key in ("t_warmup", "t_decay", "t_max", "step_size")]
        return [t for t in [*found, *(self.milestones or [])] if t is not None]

    def build(self, optimizer: Optimizer, ratio: float = 1.0) -> ScheduledLR:
        options = self.model_dump(exclude={"name"}, exclude_none=True)
        for key in ("t_warmup", "t_decay", "t_max", "step_size"):
            if key in options:
                options[key] = getattr(self, key)
        if "milestones" in options:
            options["milestones"] = list(self.milestones or [])
        schedule = SCHEDULES[self.name](**options)
        return ScheduledLR(optimizer, schedule.scaled(ratio) if ratio != 1.0 else schedule)
