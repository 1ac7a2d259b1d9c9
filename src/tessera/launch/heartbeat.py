"""The heartbeat: rank 0 of a training process writes `RUN/heartbeat.json` (step, time, pid)
every few seconds, and the watchdog reads it to tell a slow run from a hung one.

It is a daemon thread beside the loop rather than a callback in it: it costs the loop nothing
(no per-batch check), and it does not join the checkpointed callback list, so runs with and
without it resume each other's checkpoints. It reads `state.timestamp`, which the loop
replaces as a whole after every batch, so a read is always a consistent value. A process that
is stuck (a deadlocked collective, a hook that sleeps, SIGSTOP) keeps its step unchanged, and
that, not the age of the file, is what the watchdog calls "no progress".
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HEARTBEAT = "heartbeat.json"
DEFAULT_INTERVAL = 5.0


def heartbeat_interval() -> float:
    """Seconds between writes: `$TESSERA_HEARTBEAT_INTERVAL`, default 5."""
    value = os.environ.get("TESSERA_HEARTBEAT_INTERVAL")
    try:
        return max(float(value), 0.01) if value else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL


def write_heartbeat(folder: Path, record: dict[str, Any]) -> None:
    """Replace the heartbeat file whole (temporary name, then rename; no fsync: it is advisory)."""
    path = folder / HEARTBEAT
    temporary = folder / f".{HEARTBEAT}.{os.getpid()}.tmp"
    try:
        temporary.write_text(json.dumps(record))
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)  # no torn temporary left behind
        raise


def read_heartbeat(folder: str | Path) -> dict[str, Any] | None:
    """The last heartbeat of the run in `folder`, or None if there is none (yet)."""
    try:
        return json.loads((Path(folder) / HEARTBEAT).read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def heartbeat(folder: Path, state: Any, interval: float | None = None) -> Iterator[None]:
    """Write heartbeats for `state` while the block runs (rank 0 only)."""
    if state.rank != 0:
        yield
        return
    interval = heartbeat_interval() if interval is None else interval
    done = threading.Event()
    started = time.time()

    def beat(final: bool = False) -> None:
        record = {
            "step": state.timestamp.batch,
            "epoch": state.timestamp.epoch,
            "time": time.time(),
            "started": started,
            "pid": os.getpid(),
            "done": final,
        }
        with contextlib.suppress(OSError):  # a full disk shows in the checkpoint writes
            write_heartbeat(folder, record)

    def loop() -> None:
        while not done.wait(interval):
            beat()

    beat()
    thread = threading.Thread(target=loop, name="tessera-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=interval + 1)
        beat(final=True)


def last_metrics(folder: str | Path, tail_bytes: int = 65536) -> tuple[int | None, dict[str, Any]]:
    """The last step and the newest value of each metric in the run's metrics.jsonl tail."""
    path = Path(folder) / "metrics.jsonl"
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - tail_bytes))
            lines = file.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None, {}
    step: int | None = None
    metrics: dict[str, Any] = {}
    for line in lines[1:] if len(lines) > 1 and tail_bytes < size else lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "step" not in record:
            continue
        step = record["step"]
        metrics.update({k: v for k, v in record.items() if k not in ("step", "time")})
    return step, metrics
