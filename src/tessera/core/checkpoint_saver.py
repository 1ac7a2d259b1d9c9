"""The callbacks through which the trainer checkpoints and evaluates at intervals."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tessera.core import checkpoint
from tessera.core.callback import Callback
from tessera.core.event import Event
from tessera.core.interval import Interval
from tessera.core.time import Time

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State
    from tessera.core.trainer import Trainer


class CheckpointSaver(Callback):
    """Saves the full training state every `interval` into `folder`, keeping the last N."""

    def __init__(
        self, folder: str | Path, interval: Time | str | int, keep_last: int | None = None
    ) -> None:
        self.folder = Path(folder)
        self.interval = Interval(interval, "save_interval")
        self.keep_last = keep_last
        self.saved: list[Path] = []

        self._deferred = False

    def _save(self, state: State) -> None:
        if state.rank == 0:
            ts = state.timestamp
            name = checkpoint.checkpoint_name(ts.epoch, ts.batch)
            self.saved.append(
                checkpoint.save(state.state_dict(), self.folder, name, self.keep_last)
            )

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


class PeriodicEvaluation(Callback):
    """Runs the trainer's evaluation every `interval` (and at the end of the run)."""

    def __init__(self, trainer: Trainer, interval: Time | str | int) -> None:
        self.trainer = trainer
        self.interval = Interval(interval, "eval_interval")

    def batch_end(self, state: State, logger: Logger) -> None:
        if self.interval.due(state, Event.BATCH_END):
            self.trainer.evaluate()

    def epoch_end(self, state: State, logger: Logger) -> None:
        if self.interval.due(state, Event.EPOCH_END):
            self.trainer.evaluate()

    def state_dict(self) -> dict[str, Any]:
        return {}
