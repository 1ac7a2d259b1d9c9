"""SIGKILL a training run at a chosen checkpoint: shared by the exact-resume chaos tests."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path


def newest_batch(checkpoints: Path) -> int:
    """The batch of the newest checkpoint in a run's manifest (-1: none yet)."""
    try:
        entries = json.loads((checkpoints / "manifest.json").read_text())["checkpoints"]
    except (FileNotFoundError, ValueError, KeyError):
        return -1
    return max((entry["batch"] for entry in entries), default=-1)


def kill_after(
    command: list[str],
    env: dict[str, str],
    checkpoints: Path,
    batch: int,
    delay: float = 0.0,
    wait_s: float = 240,
) -> int:
    """Start `command`, SIGKILL it `delay` seconds after its checkpoint of `batch` is recorded;
    returns the newest checkpoint's batch after the kill."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + wait_s
    while newest_batch(checkpoints) < batch and time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.01)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    return newest_batch(checkpoints)
