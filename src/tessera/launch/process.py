"""Processes the watchdog owns: start them in their own session, find every descendant,
kill the whole tree, reap exits, and say how a process ended.

torchrun starts each rank in a session of its own, so killing the agent's process group
would leave ranks behind; and a rank whose agent was SIGKILLed is re-parented away from it.
The watchdog therefore makes itself a child subreaper (Linux): orphans of anything it started
become its children, so walking its descendants finds them all.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Adopt the orphans of this process's descendants (Linux); False where unsupported."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies: never run unwatched."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    command: list[str],
    log: IO[bytes] | int | None,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    stdin: int | None = None,
    stdout: int | None = None,
    detach: bool = False,
) -> subprocess.Popen:
    """Start `command` in a new session, output (or with `stdout`, errors) to `log`; killed
    when this process dies, unless `detach` (then it outlives this process)."""
    return subprocess.Popen(
        command,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=stdout if stdout is not None else log,
        stderr=log if stdout is not None else (subprocess.STDOUT if log is not None else None),
        env=env,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=None if detach else die_with_parent,
    )


def children_of() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process on the machine (from /proc)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields follow the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (not `pid` itself)."""
    tree = children_of()
    found, pending = [], list(tree.get(pid, []))
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(tree.get(child, []))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited; it only waits to be reaped
        return (Path("/proc") / str(pid) / "stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return True


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def kill_tree(
    root: int, grace: float = 10.0, include_root: bool = True, keep: list[int] | None = None
) -> None:
    """SIGTERM every process below this one (`root` is the direct child; with the subreaper,
    orphans count too) except `keep`, then SIGKILL what is left after `grace` seconds."""
    spared = set(keep or [])

    def targets() -> list[int]:
        found = [root] if include_root else []
        return [pid for pid in found + descendants(os.getpid()) if pid not in spared]

    remaining = targets()
    if not remaining:
        return
    signal_all(remaining, signal.SIGTERM)
    signal_all(remaining, signal.SIGCONT)  # a stopped process acts on SIGTERM only once woken
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        remaining = [pid for pid in remaining if alive(pid)]
        if not remaining:
            return
        time.sleep(0.05)
    signal_all(targets(), signal.SIGKILL)


def reap() -> dict[int, int]:
    """Collect exited children without blocking: pid -> raw wait status."""
    exited: dict[int, int] = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return exited
        if pid == 0:
            return exited
        exited[pid] = status


def exit_code(status: int) -> int:
    """A wait status as a shell-style code: the exit code, or -N for signal N."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def describe_exit(code: int, oom_killed: bool = False) -> str:
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        if oom_killed:
            return f"killed by the kernel's out-of-memory killer ({name})"
        return f"killed by {name}"
    if code == 2:
        return "bad input (exit code 2)"
    return "completed" if code == 0 else f"exit code {code}"


def oom_kill_count() -> int | None:
    """The cgroup's count of out-of-memory kills so far (cgroup v2), or None if unknown."""
    try:
        text = Path("/sys/fs/cgroup/memory.events").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return None
