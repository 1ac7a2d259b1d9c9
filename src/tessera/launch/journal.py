"""The run folder's own account of its attempts: `RUN/attempts.jsonl`, one event per line.

The watchdog writes here wherever it runs (on this machine, inside a SLURM allocation, in a
pod), because the run folder is the one place every node and the submitting machine share.
The registry is then brought up to date from it by whoever owns the registry: at once for a
local run, and by `tessera runs ...` for a SLURM or Kubernetes one. That keeps SQLite off
network file systems, where its locking cannot be trusted. Replaying a journal is idempotent.

Events: `{"event": "attempt", "number", "started", "resumed_from", "host", "pid"}`,
`{"event": "attempt_end", "number", "ended", "cause", "exit_code"}` and
`{"event": "status", "status", "reason", "time"}`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tessera.core.files import writing
from tessera.launch.registry import Registry

JOURNAL = "attempts.jsonl"


def append(folder: Path, record: dict[str, Any]) -> None:
    """Append one event and flush it to disk (O_APPEND: whole lines, even from two writers)."""
    line = (json.dumps(record, default=str) + "\n").encode()
    with writing("the attempts journal", folder / JOURNAL):
        folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(folder / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:  # a line torn by a full disk is skipped by `read` (another writer may follow)
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def read(folder: str | Path) -> list[dict[str, Any]]:
    """Every complete event in the journal of `folder` (none if there is no journal)."""
    try:
        text = (Path(folder) / JOURNAL).read_text(encoding="utf-8")
    except OSError:
        return []
    events = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # a torn last line
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def next_attempt(folder: str | Path) -> int:
    numbers = [event["number"] for event in read(folder) if event.get("event") == "attempt"]
    return max(numbers, default=0) + 1


def last_status(folder: str | Path) -> dict[str, Any] | None:
    statuses = [event for event in read(folder) if event.get("event") == "status"]
    return statuses[-1] if statuses else None


def apply(registry: Registry, run_id: str, folder: str | Path, status: bool = True) -> None:
    """Bring the registry's attempts (and, with `status`, the run's status) up to the journal."""
    for event in read(folder):
        if status or event.get("event") != "status":
            apply_event(registry, run_id, event)


def apply_event(registry: Registry, run_id: str, event: dict[str, Any]) -> None:
    kind = event.get("event")
    if kind == "attempt":
        registry.start_attempt(
            run_id,
            resumed_from=event.get("resumed_from"),
            pid=event.get("pid"),
            number=event["number"],
            started=event.get("started"),
            host=event.get("host"),
        )
    elif kind == "attempt_end":
        registry.end_attempt(
            run_id,
            event["number"],
            event.get("cause") or "ended",
            event.get("exit_code"),
            event.get("ended"),
        )
    elif kind == "status":
        registry.update(run_id, status=event["status"], reason=event.get("reason"))
