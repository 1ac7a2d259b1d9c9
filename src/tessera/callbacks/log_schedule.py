"""When a reporting callback logs: every `log_interval` of training, and at the end of the run.

Reading a loss or a throughput off the device costs a host sync, so reporters only do it on
log steps. A bare number means batches (`10` is every 10 batches), unlike other durations
where a bare number means epochs: nobody logs every ten epochs by accident this way.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer

from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError
from tessera.core.event import Event
from tessera.core.interval import Interval
from tessera.core.state import State
from tessera.core.time import Time, TimeUnit


def parse_log_interval(value: Time | str | int, field_name: str = "log_interval") -> Time:
    """A `Time` from '10ba', '500sp', '1ep', '0.1dur', or a bare positive int (batches)."""
    if isinstance(value, bool):
        raise ConfigError(f"{field_name}: {value!r} is not a time; give e.g. 10 or '10ba'")
    if isinstance(value, int):
        if value <= 0:
            raise ConfigError(f"{field_name}: {value} must be a positive number of batches")
        return Time(value, TimeUnit.BATCH)
    time = Time.coerce(value, field_name)
    if time.value <= 0:
        raise ConfigError(f"{field_name}: {value!r} must be more than zero")
    return time


def _log_interval_from_config(value: Any) -> Time:
    try:
        return parse_log_interval(value, "value")
    except ConfigError as error:
        raise ValueError(str(error).removeprefix("value: ")) from None


# A config field for how often to log: '10ba', '1ep', '0.1dur' or a bare number of batches.
LogInterval = Annotated[
    Time, BeforeValidator(_log_interval_from_config), PlainSerializer(str, return_type=str)
]


class LogIntervalConfig(ComponentConfig):
    """The option every reporter shares: how often it logs (one default for all of them)."""

    log_interval: LogInterval = Field("10ba", description="how often to log (bare number: batches)")


class LogSchedule:
    """Says whether the current BATCH_END (or the final EPOCH_END) is a log step."""

    def __init__(self, log_interval: Time | str | int, field_name: str = "log_interval") -> None:
        self.time = parse_log_interval(log_interval, field_name)
        self._interval = Interval(self.time, field_name)

    def due(self, state: State, event: Event = Event.BATCH_END) -> bool:
        return self._interval.due(state, event)
