"""Training time: durations in epochs, batches, samples, tokens or a fraction of the run.

`Time.parse("10ep")`, `"500ba"`, `"4096sp"`, `"1e6tok"`, `"0.25dur"`. A `Timestamp` counts all
four units at once, in total and within the current epoch, and is part of every checkpoint.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import asdict, dataclass, replace
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from tessera.core.errors import ConfigError
from tessera.core.values import MAX_INT


class TimeUnit(str, enum.Enum):
    EPOCH = "ep"
    BATCH = "ba"
    SAMPLE = "sp"
    TOKEN = "tok"
    DURATION = "dur"

    @property
    def plural(self) -> str:
        """How messages count this unit: 'epochs', 'batches', ..."""
        return {"batch": "batches", "duration": "fractions of the run"}.get(
            self.name.lower(), self.name.lower() + "s"
        )


_UNITS = ", ".join(f"'{u.value}'" for u in TimeUnit)
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-z]+)\s*$")


@dataclass(frozen=True, order=False)
class Time:
    """An amount of training time: a non-negative value in one unit."""

    value: float
    unit: TimeUnit

    def __post_init__(self) -> None:
        object.__setattr__(self, "unit", TimeUnit(self.unit))
        if not math.isfinite(self.value):
            raise ConfigError(f"a time must be a finite number, not {self.value}")
        if self.value > MAX_INT:
            raise ConfigError(
                f"{self.value:.4g} {self.unit.plural} is more than a run can count (at most "
                f"{MAX_INT})"
            )
        if self.value < 0:
            raise ConfigError(f"time {self.value}{self.unit.value} is negative")
        if self.unit == TimeUnit.DURATION and self.value > 1:
            raise ConfigError(
                f"time '{self.value}dur' is more than the whole run; a 'dur' value is a "
                "fraction of max_duration between 0 and 1"
            )
        if self.unit != TimeUnit.DURATION and not float(self.value).is_integer():
            raise ConfigError(
                f"time '{self.value}{self.unit.value}' must be a whole number of "
                f"{self.unit.plural}; only 'dur' takes fractions"
            )

    @classmethod
    def parse(cls, text: str, field: str = "time") -> Time:
        """Parse '10ep', '500ba', '4096sp', '1e6tok' or '0.25dur'; the error names `field`."""
        match = _PATTERN.match(text) if isinstance(text, str) else None
        if match is None:
            raise ConfigError(
                f"{field}: {text!r} is not a time; write a number and a unit, one of {_UNITS} "
                "(for example '10ep', '500ba', '1e6tok', '0.25dur')"
            )
        number, unit = match.groups()
        if unit not in {u.value for u in TimeUnit}:
            raise ConfigError(f"{field}: {text!r} has unit {unit!r}; accepted units are {_UNITS}")
        value: float = int(number) if number.isdigit() else float(number)  # digits: exact
        if unit != "dur" and math.isfinite(value) and float(value).is_integer():
            value = int(value)
        try:
            return cls(value, TimeUnit(unit))
        except ConfigError as error:
            raise ConfigError(f"{field}: {error}") from None

    @classmethod
    def coerce(cls, value: Time | str | int, field: str = "time") -> Time:
        """Accept a Time, a string, or a bare integer (read as epochs)."""
        if isinstance(value, Time):
            return value
        if isinstance(value, bool):
            raise ConfigError(f"{field}: {value!r} is not a time")
        if isinstance(value, int):
            return cls(value, TimeUnit.EPOCH)
        return cls.parse(value, field)

    def _check_same_unit(self, other: Time) -> None:
        if self.unit != other.unit:
            raise ValueError(f"cannot compare {self} with {other}: different units")

    def __lt__(self, other: Time) -> bool:
        self._check_same_unit(other)
        return self.value < other.value

    def __le__(self, other: Time) -> bool:
        self._check_same_unit(other)
        return self.value <= other.value

    def __gt__(self, other: Time) -> bool:
        self._check_same_unit(other)
        return self.value > other.value

    def __ge__(self, other: Time) -> bool:
        self._check_same_unit(other)
        return self.value >= other.value

    def __add__(self, other: Time) -> Time:
        self._check_same_unit(other)
        return Time(self.value + other.value, self.unit)

    def __mul__(self, ratio: float) -> Time:
        """Scale a time (used by `scale_schedule_ratio`); whole units are rounded."""
        scaled = self.value * ratio
        return Time(scaled if self.unit == TimeUnit.DURATION else round(scaled), self.unit)

    def __str__(self) -> str:
        value = self.value if self.unit == TimeUnit.DURATION else int(self.value)
        return f"{value}{self.unit.value}"


@dataclass(frozen=True)
class Timestamp:
    """Where training is: totals since the start and counts within the current epoch."""

    epoch: int = 0
    batch: int = 0
    sample: int = 0
    token: int = 0
    batch_in_epoch: int = 0
    sample_in_epoch: int = 0
    token_in_epoch: int = 0

    def get(self, unit: TimeUnit | str) -> int:
        """The total count in `unit` ('dur' has no count: ask the State for progress)."""
        unit = TimeUnit(unit)
        if unit == TimeUnit.DURATION:
            raise ValueError("a Timestamp has no 'dur' count; use State.progress()")
        return {
            TimeUnit.EPOCH: self.epoch,
            TimeUnit.BATCH: self.batch,
            TimeUnit.SAMPLE: self.sample,
            TimeUnit.TOKEN: self.token,
        }[unit]

    def after_batch(self, samples: int, tokens: int = 0) -> Timestamp:
        return replace(
            self,
            batch=self.batch + 1,
            sample=self.sample + samples,
            token=self.token + tokens,
            batch_in_epoch=self.batch_in_epoch + 1,
            sample_in_epoch=self.sample_in_epoch + samples,
            token_in_epoch=self.token_in_epoch + tokens,
        )

    def after_epoch(self) -> Timestamp:
        return replace(
            self, epoch=self.epoch + 1, batch_in_epoch=0, sample_in_epoch=0, token_in_epoch=0
        )

    def state_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Timestamp:
        return cls(**{key: int(value) for key, value in state.items()})

    def __str__(self) -> str:
        return f"epoch {self.epoch} batch {self.batch} ({self.sample} samples)"


def _time_from_config(value: Any) -> Time:
    try:
        return Time.coerce(value, "value")
    except ConfigError as error:  # pydantic names the field; keep only what is wrong
        raise ValueError(str(error).removeprefix("value: ")) from None


# A `Time` field of a config: accepts '10ep', '500ba', ... or a bare integer (epochs) and is
# written back as its string.
TimeValue = Annotated[
    Time, BeforeValidator(_time_from_config), PlainSerializer(str, return_type=str)
]
