"""`SpeedMonitor`: training throughput, wall-clock time and model FLOPs utilization (MFU).

Each batch is timed from the end of the previous one to its own end, so data loading counts
and evaluation does not (its time is taken out). Rates are averaged over the last `window`
batches. Host clocks run ahead of an asynchronous GPU for a batch or two, which a window of
several batches evens out; no device sync is added.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from pydantic import Field

from tessera.callbacks.log_schedule import LogIntervalConfig, LogSchedule
from tessera.callbacks.peak_flops import peak_flops_per_second as known_peak
from tessera.core.callback import Callback
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State


class SpeedMonitorConfig(LogIntervalConfig):
    window: int = Field(20, ge=1, description="batches the rates are averaged over")
    peak_flops_per_second: float | None = Field(
        None,
        gt=0,
        description="peak FLOP/s of one device for MFU (default: the known-GPU table)",
    )


class SpeedMonitor(Callback):
    """Logs `throughput/*` (samples, tokens, batches per second; MFU) and `time/*` seconds.

    `peak_flops_per_second` overrides the device table (needed for MFU on CPUs and unknown
    accelerators). The trainer counts a batch's samples and tokens over all ranks; per-device
    rates divide them by the world size (ranks train batches of the same size).
    """

    Config = SpeedMonitorConfig

    def __init__(self, config: SpeedMonitorConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.window = self.config.window
        self.schedule = LogSchedule(self.config.log_interval)
        self.peak_override = self.config.peak_flops_per_second
        self.peak: float | None = self.peak_override
        # (seconds, samples, tokens, flops or None) per batch in the window.
        self._batches: deque[tuple[float, int, int, float | None]] = deque(maxlen=self.window)
        self._last_end: float | None = None
        self._eval_start: float | None = None
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.latest: dict[str, float] = {}

    def fit_start(self, state: State, logger: Logger) -> None:
        if self.peak_override is None:
            self.peak = known_peak(state.device, state.precision)
        self._last_end = time.perf_counter()

    def batch_start(self, state: State, logger: Logger) -> None:
        if self._last_end is None:  # driven without FIT_START: time from the first batch
            self._last_end = time.perf_counter()

    def eval_start(self, state: State, logger: Logger) -> None:
        self._eval_start = time.perf_counter()

    def eval_end(self, state: State, logger: Logger) -> None:
        if self._eval_start is None:
            return
        paused = time.perf_counter() - self._eval_start
        self.eval_seconds += paused
        if self._last_end is not None:
            self._last_end += paused
        self._eval_start = None

    def batch_end(self, state: State, logger: Logger) -> None:
        now = time.perf_counter()
        if self._last_end is not None:
            seconds = now - self._last_end
            self.train_seconds += seconds
            flops_of = getattr(state.unwrapped_model, "flops_per_batch", None)
            flops = flops_of(state.batch) if callable(flops_of) else None
            self._batches.append(
                (seconds, state.last_batch_samples, state.last_batch_tokens, flops)
            )
        self._last_end = now
        if self.schedule.due(state, Event.BATCH_END):
            self._log(state, logger)

    def epoch_end(self, state: State, logger: Logger) -> None:
        if self.schedule.due(state, Event.EPOCH_END):
            self._log(state, logger)

    def _log(self, state: State, logger: Logger) -> None:
        metrics = self.compute(state.world_size)
        if metrics:
            self.latest = metrics
            logger.log_metrics(metrics, step=state.timestamp.batch)

    def compute(self, world_size: int = 1) -> dict[str, float]:
        """Rates over the current window (empty before the first timed batch)."""
        if not self._batches:
            return {}
        seconds = sum(entry[0] for entry in self._batches)
        samples = sum(entry[1] for entry in self._batches)
        tokens = sum(entry[2] for entry in self._batches)
        seconds = max(seconds, 1e-9)
        metrics = {
            "throughput/batches_per_sec": len(self._batches) / seconds,
            "throughput/samples_per_sec": samples / seconds,  # the trainer counts globally
            "throughput/device/samples_per_sec": samples / world_size / seconds,
            "time/train_seconds": self.train_seconds,
            "time/eval_seconds": self.eval_seconds,
        }
        if tokens:
            metrics["throughput/tokens_per_sec"] = tokens / seconds
            metrics["throughput/device/tokens_per_sec"] = tokens / world_size / seconds
        flops = [entry[3] for entry in self._batches]
        if all(value is not None for value in flops):
            flops_per_second = sum(flops) / seconds  # type: ignore[arg-type]
            metrics["throughput/device/flops_per_sec"] = flops_per_second
            if self.peak:
                metrics["throughput/mfu"] = flops_per_second / self.peak
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.eval_seconds = float(state.get("eval_seconds", 0.0))
