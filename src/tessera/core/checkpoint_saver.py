"""`CheckpointSaver`: the callback through which the trainer checkpoints at an interval.

It writes through the run's `Checkpointer` (single-file or sharded alike), and once more when
the run ends for any reason (the end of its duration, early stopping), so running the same
command again finds the run complete instead of training it a second time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tessera.core.callback import Callback
from tessera.core.checkpointer import Checkpointer
from tessera.core.event import Event
from tessera.core.interval import Interval
from tessera.core.time import Time

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State


class CheckpointSaver(Callback):
    """Saves the full training state every `interval` through `checkpointer`."""

    def __init__(self, checkpointer: Checkpointer, interval: Time | str | int) -> None:
        super().__init__()
        self.checkpointer = checkpointer
        self.interval = Interval(interval, "save_interval")
        self.saved: list[Path] = []
        self._deferred = False
        self._last_saved_batch: int | None = None

    def _save(self, state: State) -> None:
        path = self.checkpointer.save(state)
        self._last_saved_batch = state.timestamp.batch
        if path is not None:
            self.saved.append(path)

    def after_load(self, state: State, logger: Logger) -> None:
        self._last_saved_batch = state.timestamp.batch  # the checkpoint just loaded

    def batch_checkpoint(self, state: State, logger: Logger) -> None:
        if self.interval.due(state, Event.BATCH_END):
            if state.epoch_complete:  # save once the epoch has ended, so resume starts clean
                self._deferred = True
            else:
                self._save(state)

    def epoch_checkpoint(self, state: State, logger: Logger) -> None:
        if self.interval.due(state, Event.EPOCH_END) or self._deferred:
            self._deferred = False
            self._save(state)

    def fit_end(self, state: State, logger: Logger) -> None:
        if self._last_saved_batch != state.timestamp.batch:
            self._save(state)
        self.checkpointer.flush()

    def close(self, state: State, logger: Logger) -> None:
        self.checkpointer.close()
