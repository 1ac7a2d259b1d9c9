"""`LRMonitor`: the learning rate of every optimizer parameter group, on log steps.

The rates are read at BATCH_START, before the optimizer step, because schedulers step right
after it: what is logged for a batch is the rate that batch was trained with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tessera.callbacks.log_schedule import LogIntervalConfig, LogSchedule
from tessera.core.callback import Callback
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State


class LRMonitorConfig(LogIntervalConfig):
    """Only `log_interval`."""


class LRMonitor(Callback):
    """Logs `lr/group<j>` (one optimizer) or `lr/optimizer<i>/group<j>` (several)."""

    Config = LRMonitorConfig

    def __init__(self, config: LRMonitorConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.schedule = LogSchedule(self.config.log_interval)
        self._rates: dict[str, Any] = {}

    def batch_start(self, state: State, logger: Logger) -> None:
        # Keep the values as they are (a tensor lr stays on device until a log step).
        several = len(state.optimizers) > 1
        self._rates = {
            _name(i, j, several): group["lr"]
            for i, optimizer in enumerate(state.optimizers)
            for j, group in enumerate(optimizer.param_groups)
        }

    def batch_end(self, state: State, logger: Logger) -> None:
        if self.schedule.due(state, Event.BATCH_END):
            self._log(state, logger)

    def epoch_end(self, state: State, logger: Logger) -> None:
        if self.schedule.due(state, Event.EPOCH_END):
            self._log(state, logger)

    def _log(self, state: State, logger: Logger) -> None:
        if self._rates:
            metrics = {name: float(rate) for name, rate in self._rates.items()}
            logger.log_metrics(metrics, step=state.timestamp.batch)


def _name(optimizer_index: int, group_index: int, several: bool) -> str:
    if several:
        return f"lr/optimizer{optimizer_index}/group{group_index}"
    return f"lr/group{group_index}"
