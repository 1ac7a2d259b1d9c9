"""`ProgressBarLogger`: the console view of a run, and the logger of the training loss.

On a terminal it draws a live rich progress bar: one per epoch when the run is measured in
epochs, one for the whole run otherwise (batches, samples, tokens). Where stdout is not a
terminal (CI logs, files) it prints a plain line on each log step instead. Either way it shows
the loss, throughput and time left, prints each evaluation's results as a line, and logs
`loss/train` every `log_interval` (reading the loss is a device sync, so only then).
Only rank 0 shows or logs anything.
"""

from __future__ import annotations

import datetime
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from tessera.callbacks.log_schedule import LogIntervalConfig, LogSchedule
from tessera.core.errors import ConfigError
from tessera.core.event import Event
from tessera.core.logger import LoggerDestination
from tessera.core.model import model_name
from tessera.core.time import TimeUnit

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

_UNIT_WORDS = {TimeUnit.BATCH: "batch", TimeUnit.SAMPLE: "sample", TimeUnit.TOKEN: "token"}
_PLURALS = {TimeUnit.BATCH: "batches", TimeUnit.SAMPLE: "samples", TimeUnit.TOKEN: "tokens"}


class ProgressBarConfig(LogIntervalConfig):
    mode: Literal["auto", "bar", "lines"] = Field(
        "auto", description="'auto': a bar on a terminal, lines otherwise; 'bar'; 'lines'"
    )


class ProgressBarLogger(LoggerDestination):
    """The console view; `console` (Python only) draws on a given rich Console."""

    Config = ProgressBarConfig

    def __init__(
        self,
        config: ProgressBarConfig | None = None,
        /,
        *,
        console: Console | None = None,
        **options: Any,
    ) -> None:
        super().__init__(config, **options)
        if console is not None and not isinstance(console, Console):
            raise ConfigError(f"console: {console!r} is not a rich Console")
        self.schedule = LogSchedule(self.config.log_interval)
        self.console = console
        self.active = True
        self.use_bar = False
        self.per_epoch = False
        self._unit = TimeUnit.BATCH
        self._total = 0.0
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._fields: dict[str, str] = {"loss": "", "rate": "", "eta": ""}
        self._fit_start = 0.0
        self._progress_at_start = 0.0
        self._last_log: tuple[float, int, int] | None = None  # (time, samples, tokens)
        self._eval_start: float | None = None

    # -- set-up ----------------------------------------------------------------------------

    def init(self, state: State, logger: Logger) -> None:
        self.active = state.rank == 0
        if self.console is None:
            self.console = Console(highlight=False, soft_wrap=True)

    def fit_start(self, state: State, logger: Logger) -> None:
        if not self.active:
            return
        if self.console is None:
            self.console = Console(highlight=False, soft_wrap=True)
        mode = self.config.mode
        self.use_bar = mode == "bar" or (mode == "auto" and self.console.is_terminal)
        total = state.resolve(state.max_duration, "max_duration")
        self._unit, self._total = total.unit, float(total.value)
        self.per_epoch = self._unit == TimeUnit.EPOCH
        self._fit_start = time.perf_counter()
        self._progress_at_start = state.progress()
        self._last_log = (self._fit_start, state.timestamp.sample, state.timestamp.token)
        parameters = sum(p.numel() for p in state.model.parameters())
        self._print(
            f"training {model_name(state.model)} ({parameters:,} parameters) from "
            f"{self._position_text(state)}, world size {state.world_size}"
        )
        if self.use_bar:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>5.1f}%"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[loss]} {task.fields[rate]} {task.fields[eta]}"),
                console=self.console,
            )
            self._progress.start()
            if not self.per_epoch:
                self._new_task(_PLURALS[self._unit], self._total, state)

    def _new_task(self, description: str, total: float | None, state: State) -> None:
        assert self._progress is not None
        self._task = self._progress.add_task(
            description, total=total, completed=self._completed(state), **self._fields
        )

    def _completed(self, state: State) -> float:
        if self.per_epoch:
            return float(state.timestamp.batch_in_epoch)
        return state.position(self._unit)

    def epoch_start(self, state: State, logger: Logger) -> None:
        if self.active and self._progress is not None and self.per_epoch:
            done = f"epochs done {state.timestamp.epoch}/{int(self._total)}"
            self._new_task(done, state.batches_per_epoch, state)

    # -- per batch -------------------------------------------------------------------------

    def batch_end(self, state: State, logger: Logger) -> None:
        if not self.active:
            return
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=self._completed(state))
        if self.schedule.due(state, Event.BATCH_END):
            self._report(state, logger)

    def epoch_end(self, state: State, logger: Logger) -> None:
        if not self.active:
            return
        if self.schedule.due(state, Event.EPOCH_END):
            self._report(state, logger)
        if self._progress is not None and self._task is not None and self.per_epoch:
            self._progress.remove_task(self._task)
            self._task = None
            epochs = f"epochs done {state.timestamp.epoch}/{int(self._total)}"
            self._print(f"{epochs} {self._summary()}")

    def _report(self, state: State, logger: Logger) -> None:
        loss = None
        if state.batch_loss is not None:
            loss = float(state.batch_loss.item())  # device sync: log steps only
            logger.log_metrics({"loss/train": loss}, step=state.timestamp.batch)
        now = time.perf_counter()
        assert self._last_log is not None
        then, samples, tokens = self._last_log
        seconds = max(now - then, 1e-9)
        samples_per_second = (state.timestamp.sample - samples) / seconds
        tokens_per_second = (state.timestamp.token - tokens) / seconds
        self._last_log = (now, state.timestamp.sample, state.timestamp.token)
        self._fields = {
            "loss": f"loss {loss:.4f}" if loss is not None else "",
            "rate": f"{samples_per_second:,.1f} samples/s"
            + (f" {tokens_per_second:,.0f} tokens/s" if tokens_per_second else ""),
            "eta": f"eta {self._eta(state, now)}",
        }
        # Other callbacks may add a short status (e.g. CostMonitor: "$1.20 of ~$4.80").
        extra = [cb.progress_text(state) for cb in state.callbacks if hasattr(cb, "progress_text")]
        self._fields["eta"] += "".join(f"  {text}" for text in extra if text)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, **self._fields)
        elif self._progress is None:
            self._print(f"[{self._position_text(state)}] {self._summary()}")

    def _summary(self) -> str:
        return "  ".join(value for value in self._fields.values() if value)

    def _eta(self, state: State, now: float) -> str:
        done = state.progress() - self._progress_at_start
        if done <= 0:
            return "?"
        seconds = (now - self._fit_start) / done * (1.0 - state.progress())
        return str(datetime.timedelta(seconds=round(seconds)))

    def _position_text(self, state: State) -> str:
        ts = state.timestamp
        percent = f"{100 * state.progress():.0f}%"
        if self.per_epoch:
            of = f"/{state.batches_per_epoch}" if state.batches_per_epoch else ""
            # Finished epochs, as in checkpoint names (ep1-ba40: one epoch done, batch 40).
            done = f"epochs done {ts.epoch}/{int(self._total)}"
            return f"{done}, batch {ts.batch_in_epoch}{of} {percent}"
        word = _UNIT_WORDS[self._unit]
        return f"{word} {ts.get(self._unit)}/{int(self._total)} {percent}"

    # -- evaluation and the end ------------------------------------------------------------

    def eval_start(self, state: State, logger: Logger) -> None:
        self._eval_start = time.perf_counter()

    def eval_end(self, state: State, logger: Logger) -> None:
        seconds = None if self._eval_start is None else time.perf_counter() - self._eval_start
        if seconds is not None and self._last_log is not None:
            # Evaluation time is not training time: keep it out of samples/s.
            then, samples, tokens = self._last_log
            self._last_log = (then + seconds, samples, tokens)
        self._eval_start = None
        if not self.active:
            return
        took = "" if seconds is None else f"  ({seconds:.2f} s)"
        for label, results in state.eval_results.items():
            values = "  ".join(f"{name} {value:.4f}" for name, value in results.items())
            self._print(f"{label} at batch {state.timestamp.batch}: {values}{took}")

    def fit_end(self, state: State, logger: Logger) -> None:
        if not self.active:
            return
        seconds = round(time.perf_counter() - self._fit_start)
        ended = f"stopped ({state.stop_reason})" if state.stop_reason else "finished"
        self._print(
            f"training {ended} at {state.timestamp} in {datetime.timedelta(seconds=seconds)}"
        )

    def _print(self, text: str) -> None:
        console = self._progress.console if self._progress is not None else self.console
        if console is not None:
            console.print(text, markup=False, highlight=False)

    def close(self, state: State, logger: Logger) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None

    def state_dict(self) -> dict[str, Any]:
        return {}
