"""`MemoryMonitor`: how much memory training holds, on log steps.

On a CUDA device: memory allocated by tensors, reserved by PyTorch's caching allocator, and
the peak allocated since the run started. Elsewhere: the process's resident set size (RSS) and
its peak. None of these queries synchronizes the device.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import torch

from tessera.callbacks.log_schedule import LogIntervalConfig, LogSchedule
from tessera.core.callback import Callback
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

GIB = 1024**3


class MemoryMonitorConfig(LogIntervalConfig):
    """Only `log_interval`."""


class MemoryMonitor(Callback):
    """Logs `memory/*_gib` (CUDA allocator figures on GPU, process RSS otherwise)."""

    Config = MemoryMonitorConfig

    def __init__(self, config: MemoryMonitorConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.schedule = LogSchedule(self.config.log_interval)
        self.latest: dict[str, float] = {}

    def batch_end(self, state: State, logger: Logger) -> None:
        if self.schedule.due(state, Event.BATCH_END):
            self._log(state, logger)

    def epoch_end(self, state: State, logger: Logger) -> None:
        if self.schedule.due(state, Event.EPOCH_END):
            self._log(state, logger)

    def _log(self, state: State, logger: Logger) -> None:
        self.latest = memory_metrics(state.device)
        logger.log_metrics(self.latest, step=state.timestamp.batch)


def memory_metrics(device: torch.device) -> dict[str, float]:
    """Memory figures in GiB for `device` (CUDA) or for this process (any other device)."""
    if device.type == "cuda":
        return {
            "memory/allocated_gib": torch.cuda.memory_allocated(device) / GIB,
            "memory/reserved_gib": torch.cuda.memory_reserved(device) / GIB,
            "memory/peak_allocated_gib": torch.cuda.max_memory_allocated(device) / GIB,
        }
    metrics = {"memory/peak_rss_gib": peak_rss_bytes() / GIB}
    rss = current_rss_bytes()
    if rss is not None:
        metrics["memory/rss_gib"] = rss / GIB
    return metrics


def peak_rss_bytes() -> int:
    """The process's peak resident set size (ru_maxrss: KiB on Linux, bytes on macOS)."""
    import resource  # POSIX only, so imported where used

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def current_rss_bytes() -> int | None:
    """The process's resident set size now, from /proc (Linux); None where unavailable."""
    try:
        with open("/proc/self/statm") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")
