"""The logger interface: one `Logger` fans metrics out to every destination.

Destinations (console, JSONL file, TensorBoard, ...) live in `tessera.loggers`; they are also
callbacks, so they see the training events (a progress bar updates at BATCH_END).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tessera.core.callback import Callback


class LoggerDestination(Callback):
    """Somewhere metrics go. Override what you need; every method is optional."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_hyperparameters(self, hyperparameters: dict[str, Any]) -> None:
        pass


class Logger:
    """Sends metrics to all destinations; only rank 0's destinations write by default."""

    def __init__(self, destinations: Sequence[LoggerDestination] = ()) -> None:
        self.destinations = list(destinations)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for destination in self.destinations:
            destination.log_metrics(metrics, step)

    def log_hyperparameters(self, hyperparameters: dict[str, Any]) -> None:
        for destination in self.destinations:
            destination.log_hyperparameters(hyperparameters)
