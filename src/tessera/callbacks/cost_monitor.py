"""`CostMonitor`: dollars spent so far and the projected total of a run, live, and `cost.json`.

    callbacks:
      cost_monitor: {price_per_gpu_hour: 2.50}

(or `tessera train RECIPE --price 2.50`). Spent = wall seconds since the process started x
devices x price / 3600, where devices = the world size (one process per GPU) unless `gpus` is
given. The projection adds the time left at the pace of training so far (time per unit of
progress since FIT_START). A resumed run carries the seconds of the attempts before it (as
checkpointed). The progress bar shows `progress_text` beside the ETA; the metrics
`cost/dollars` and `cost/gpu_hours` are logged every `log_interval`; at the end rank 0 writes
`cost.json` into the run folder (also when the run ends in an error, with "finished": false).
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

from pydantic import Field

from tessera.callbacks.log_schedule import LogInterval, LogSchedule
from tessera.core.callback import Callback
from tessera.core.component import ComponentConfig
from tessera.core.event import Event
from tessera.core.files import atomic_write, writing
from tessera.estimate.report import money

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State


class CostMonitorConfig(ComponentConfig):
    price_per_gpu_hour: float = Field(..., ge=0, description="dollars per GPU hour", examples=[2.5])
    gpus: int | None = Field(None, ge=1, description="devices paid for (default: world size)")
    log_interval: LogInterval = Field("10ba", description="how often to log cost/*")


class CostMonitor(Callback):
    Config = CostMonitorConfig

    def __init__(self, config: CostMonitorConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.price = self.config.price_per_gpu_hour
        self.gpus_given = self.config.gpus
        self.gpus = self.gpus_given or 1
        self.schedule = LogSchedule(self.config.log_interval)
        self.previous_seconds = 0.0  # of earlier attempts (resume)
        self._built = time.perf_counter() - process_age()
        self._fit_start: float | None = None
        self._progress_at_start = 0.0
        self._written = False

    def init(self, state: State, logger: Logger) -> None:
        self.gpus = self.gpus_given or state.world_size

    def fit_start(self, state: State, logger: Logger) -> None:
        self._fit_start = time.perf_counter()
        self._progress_at_start = state.progress()

    def seconds(self) -> float:
        """Wall seconds paid for so far, this attempt and the checkpointed ones before it."""
        return self.previous_seconds + time.perf_counter() - self._built

    def dollars(self) -> float:
        return self.seconds() * self.gpus * self.price / 3600

    def projected_dollars(self, state: State) -> float | None:
        """Spent plus the time left at the pace since FIT_START, or None before any progress."""
        if self._fit_start is None:
            return None
        done = state.progress() - self._progress_at_start
        if done <= 0:
            return None
        left = (time.perf_counter() - self._fit_start) / done * (1.0 - state.progress())
        return self.dollars() + left * self.gpus * self.price / 3600

    def progress_text(self, state: State) -> str:
        projected = self.projected_dollars(state)
        total = f" of ~{money(projected)}" if projected is not None else ""
        return f"{money(self.dollars())}{total}"

    def batch_end(self, state: State, logger: Logger) -> None:
        if self.schedule.due(state, Event.BATCH_END):
            logger.log_metrics(self._metrics(), step=state.timestamp.batch)

    def fit_end(self, state: State, logger: Logger) -> None:
        logger.log_metrics(self._metrics(), step=state.timestamp.batch)
        self._write(state, finished=True)

    def close(self, state: State, logger: Logger) -> None:
        if not self._written:  # the run ended in an error: what it spent is still worth keeping
            self._write(state, finished=False)

    def _write(self, state: State, finished: bool) -> None:
        self._written = True
        if state.rank != 0 or state.run_dir is None:
            return
        record = {
            "finished": finished,
            "price_per_gpu_hour": self.price,
            "gpus": self.gpus,
            "wall_seconds": round(self.seconds(), 3),
            "gpu_hours": self.seconds() * self.gpus / 3600,
            "dollars": self.dollars(),
            "device": str(state.device),
            "batches": state.timestamp.batch,
            "samples": state.timestamp.sample,
            "tokens": state.timestamp.token,
            "stop_reason": state.stop_reason,
        }
        text = json.dumps(record, indent=2) + "\n"
        path = state.run_dir / "cost.json"
        with writing("the cost record", path):
            state.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda file: file.write(text), mode="w")

    def _metrics(self) -> dict[str, float]:
        return {"cost/dollars": self.dollars(), "cost/gpu_hours": self.seconds() * self.gpus / 3600}

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.previous_seconds = float(state.get("seconds", 0.0))


def process_age() -> float:
    """Seconds since this process started (Linux /proc), so start-up is paid for too; 0 where
    that cannot be read."""
    try:
        with open("/proc/self/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as uptime:
            up = float(uptime.read().split()[0])
        return max(0.0, up - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0
