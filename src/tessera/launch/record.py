"""How `tessera train` records itself in the run registry (and `tessera launch` its run).

A `tessera train` typed by hand is one attempt of its run: recorded as running when it starts,
completed, failed (with the error) or stopped when it ends. Under the watchdog
(`TESSERA_SUPERVISED=1`) the watchdog owns the record, and the training process only writes
its heartbeat. Worker ranks never write: the process that started them (or rank 0, when an
outside `torchrun` started them) does.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tessera.core.errors import UserError
from tessera.launch.heartbeat import last_metrics, read_heartbeat
from tessera.launch.registry import Registry

log = logging.getLogger(__name__)


def recipe_hash(recipe: str | Path) -> str | None:
    try:
        return hashlib.sha256(Path(recipe).read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def run_folder(config: Any) -> Path:
    return (Path(config.run_dir) / config.name).resolve()


def register(
    registry: Registry,
    config: Any,
    recipe: str,
    overrides: list[str],
    backend: str,
    status: str,
    launch: dict[str, Any] | None = None,
    pid: int | None = None,
) -> str:
    """Create (or take over again) the registry record of the run `config` describes."""
    return registry.record_run(
        config.name,
        run_folder(config),
        recipe=str(Path(recipe).resolve()),
        recipe_hash=recipe_hash(recipe),
        overrides=list(overrides),
        config=config.model_dump(mode="json"),
        backend=backend,
        status=status,
        launch=launch,
        pid=pid,
    )


def _records_here() -> bool:
    if os.environ.get("TESSERA_SUPERVISED") == "1" or os.environ.get("TESSERA_RUN_ID"):
        return False  # the watchdog, or the process that started this one, records
    from tessera.parallel.process_group import launched_by_torchrun

    return not launched_by_torchrun() or os.environ.get("RANK", "0") == "0"


def recorded_train(config: Any, recipe: str, overrides: list[str], train: Callable[[], int]) -> int:
    """Run `train()` (returns an exit code) as one recorded attempt of a hand-started run."""
    if not _records_here():
        return train()
    registry = Registry()
    run_id = register(registry, config, recipe, overrides, "local", "running", pid=os.getpid())
    os.environ["TESSERA_RUN_ID"] = run_id  # ranks started from here inherit it: they skip
    number = registry.start_attempt(run_id, pid=os.getpid())
    folder = run_folder(config)
    try:
        code = train()
    except UserError as error:
        _finish_after_error(registry, run_id, number, folder, "failed", f"bad input: {error}", 2)
        raise
    except KeyboardInterrupt:
        _finish_after_error(registry, run_id, number, folder, "stopped", "interrupted", 130)
        raise
    except BaseException as error:
        cause = f"{type(error).__name__}: {error}"
        _finish_after_error(registry, run_id, number, folder, "failed", cause, 1)
        raise
    if code == 0:
        _finish(registry, run_id, number, folder, "completed", None, 0)
    else:
        _finish(registry, run_id, number, folder, "failed", f"exit code {code}", code)
    return code


def _finish_after_error(
    registry: Registry, run_id: str, number: int, folder: Path, status: str, reason: str, code: int
) -> None:
    """Record how the attempt ended, keeping the run's own error the one the user sees (a
    registry on a disk that just filled up cannot record it)."""
    try:
        _finish(registry, run_id, number, folder, status, reason[:500], code)
    except UserError as error:
        log.warning("the run registry was not updated: %s", error)


def _finish(
    registry: Registry,
    run_id: str,
    number: int,
    folder: Path,
    status: str,
    reason: str | None,
    code: int,
) -> None:
    registry.end_attempt(run_id, number, reason or status, code, time.time())
    step, metrics = last_metrics(folder)
    step = (read_heartbeat(folder) or {}).get("step", step)
    fields: dict[str, Any] = {"status": status, "reason": reason}
    if step is not None:
        fields.update(last_step=step, last_metrics=metrics)
    registry.update(run_id, **fields)
