"""`--probe N`: train N + 1 steps of the recipe here, through the real trainer, and time them.

Start-up (building the trainer: imports done, data, model, compile set-up) and the first step
(compilation, allocator and cuDNN warm-up) are timed separately and kept out of the step time;
the N steps after them give the mean step seconds (each step ends with a device
synchronisation, so queued GPU work is counted). The run evaluates twice, after step N and at
its end: the first evaluation carries one-time costs (compiling the evaluation graph), the
second is what each later one costs. Then it writes one checkpoint, timed. Everything goes to a
temporary run folder that is removed afterwards.
"""

from __future__ import annotations

import gc
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tessera.core.callback import Callback
from tessera.core.errors import UserError

if TYPE_CHECKING:
    from tessera.config.schema import RunConfig
    from tessera.core.logger import Logger
    from tessera.core.state import State
    from tessera.core.trainer import Trainer


@dataclass
class ProbeResult:
    steps: int
    step_seconds: float
    first_step_seconds: float
    startup_seconds: float
    eval_seconds: float | None  # a warm evaluation
    first_eval_seconds: float | None  # the first one, compilation included
    checkpoint_seconds: float | None
    peak_memory_bytes: float | None
    device: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StepTimer(Callback):
    """Times each batch (BATCH_START to a synchronised BATCH_END) and each evaluation.

    Registered as `step_timer` (the probe adds it to the recipe's callbacks); the device
    synchronisation it adds per step makes it a measuring tool, not one for long runs.
    """

    def __init__(self, config: Any = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.batch_seconds: list[float] = []
        self.eval_seconds: list[float] = []
        self._start = 0.0

    def batch_start(self, state: State, logger: Logger) -> None:
        _synchronize(state.device)
        self._start = time.perf_counter()

    def batch_end(self, state: State, logger: Logger) -> None:
        _synchronize(state.device)
        self.batch_seconds.append(time.perf_counter() - self._start)

    def eval_start(self, state: State, logger: Logger) -> None:
        _synchronize(state.device)
        self._start = time.perf_counter()

    def eval_end(self, state: State, logger: Logger) -> None:
        _synchronize(state.device)
        self.eval_seconds.append(time.perf_counter() - self._start)


def build_probe_trainer(config: RunConfig, steps: int, folder: Path) -> Trainer:
    """The recipe's trainer, shortened to `steps` batches, writing only into `folder`.

    The one place the estimator builds a real run (adapt here when the run assembly changes).
    """
    from tessera.config import validate_config
    from tessera.config.build import build_trainer

    raw = config.model_dump(mode="json")
    raw.update(
        name="probe",
        run_dir=str(folder),
        max_duration=f"{steps}ba",
        eval_interval=f"{steps - 1}ba",  # after the timed steps, and again at the end
        save_interval=None,
        autoresume=False,
        load_path=None,
        scale_schedule_ratio=1.0,
        loggers={},
        callbacks={**raw["callbacks"], "step_timer": {}},
    )
    return build_trainer(validate_config(raw, source="the probe"))


def run_probe(config: RunConfig, steps: int, import_seconds: float = 0.0) -> ProbeResult:
    """Measure `steps` steps after one warm-up step (see the module docstring). Start-up is
    `import_seconds` (the interpreter and imports, measured by the caller) plus the build."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UserError(f"--probe: {steps!r} must be a whole number of steps, 1 or more")
    with tempfile.TemporaryDirectory(prefix="tessera-probe-") as folder:
        start = time.perf_counter()
        trainer = build_probe_trainer(config, steps + 1, Path(folder))
        timer = next(cb for cb in trainer.state.callbacks if isinstance(cb, StepTimer))
        device = trainer.state.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        startup = import_seconds + time.perf_counter() - start
        trainer.fit()
        checkpoint = _time_checkpoint(trainer, Path(folder) / "checkpoint")
        peak = float(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
        del trainer
    gc.collect()  # give the probe's memory back before the caller goes on
    if device.type == "cuda":
        torch.cuda.empty_cache()
    batches = timer.batch_seconds
    if len(batches) < 2:
        raise UserError(
            f"--probe: the run stopped after {len(batches)} batch(es) (the data holds fewer "
            "than the steps asked for?); probe fewer steps"
        )
    timed = batches[1:]
    return ProbeResult(
        steps=len(timed),
        step_seconds=sum(timed) / len(timed),
        first_step_seconds=batches[0],
        startup_seconds=startup,
        eval_seconds=timer.eval_seconds[-1] if timer.eval_seconds else None,
        first_eval_seconds=timer.eval_seconds[0] if timer.eval_seconds else None,
        checkpoint_seconds=checkpoint,
        peak_memory_bytes=peak,
        device=_device_name(device),
    )


def _time_checkpoint(trainer: Trainer, folder: Path) -> float | None:
    from tessera.core.checkpointer import FileCheckpointer

    if trainer.parallel.sharded:
        return None  # sharded checkpoints are written by every rank; not probed on one process
    start = time.perf_counter()
    FileCheckpointer(folder).save(trainer.state)
    return time.perf_counter() - start


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return str(device)
