"""The watchdog: run the training command, and when it dies or hangs, start it again from the
newest checkpoint that verifies, with exponential backoff, up to `retries` times.

Each attempt is one process tree (the `tessera train` process, or torchrun's agent and its
ranks, or `srun` inside a SLURM allocation). The watchdog polls it: an exit ends the attempt;
no new step in the heartbeat for `hang_timeout` seconds kills the tree and ends it as a hang;
SIGTERM/SIGINT to the watchdog (`tessera runs stop`) kills the tree and stops the run. Every
attempt, its cause and its checkpoint go into the run folder's journal, and from there into
the registry. Exit code 2 (bad input) is never retried: it would fail the same way again.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera.launch import journal, process
from tessera.launch.heartbeat import last_metrics, read_heartbeat
from tessera.launch.options import WatchPolicy
from tessera.launch.registry import Registry
from tessera.launch.standby import ForkServer

POLL = 0.1
_ERROR_LINE = re.compile(r"^(\w+\.)*\w*(Error|Exception|Interrupt)\b.*")


def newest_checkpoint(checkpoints: Path) -> tuple[str | None, list[str]]:
    """The newest checkpoint that verifies (what the trainer will resume from), and a note
    for each newer one skipped as corrupt."""
    if not checkpoints.is_dir():
        return None, []
    from tessera.core.manifest import CheckpointManifest  # no torch import

    notes: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: notes.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("tessera.core.manifest")
    logger.addHandler(handler)
    try:
        record = CheckpointManifest(checkpoints).latest_valid()
    finally:
        logger.removeHandler(handler)
    return (str(checkpoints / record.location) if record else None), notes


def error_line(log: Path, tail_bytes: int = 65536) -> str | None:
    """What the end of `log` says went wrong: torchrun's failed rank and its exit code, or
    the last line that reads like a Python error ('RuntimeError: ...')."""
    try:
        with open(log, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - tail_bytes))
            lines = file.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    rank = exit_code = None
    for line in lines:  # torchrun's failure report: "rank : 0 (local_rank: 0)", "exitcode : -9"
        key, _, value = line.strip().partition(":")
        if key.strip() == "rank":
            rank = value.strip()
        elif key.strip() == "exitcode":
            exit_code = value.strip()
    if exit_code is not None:
        return f"rank {rank}: exit code {exit_code}"
    for line in reversed(lines):
        text = line.split("]:", 1)[-1].strip()  # torchrun prefixes rank lines: '[default0]:'
        if _ERROR_LINE.match(text):
            return text[:300]
    return None


@dataclass
class Child:
    """An attempt's root process (the watchdog's child, or the fork server's)."""

    pid: int
    returncode: int | None = None


class Watchdog:
    """Supervises `argv` (a `tessera` command line, without the program) for the run in
    `folder`; `registry`/`run_id`: where attempts are also recorded (None: journal only)."""

    def __init__(
        self,
        folder: Path,
        argv: list[str],
        policy: WatchPolicy,
        run_id: str | None = None,
        registry: Registry | None = None,
        env: dict[str, str] | None = None,
        echo: bool = True,
        program: list[str] | None = None,
    ) -> None:
        self.folder = folder
        self.argv = argv
        self.program = program if program is not None else [sys.executable, "-m", "tessera.cli"]
        self.policy = policy
        self.run_id = run_id
        self.registry = registry
        self.env = {**os.environ, **(env or {})}
        if run_id is not None:
            self.env["TESSERA_RUN_ID"] = run_id
        self.env["TESSERA_SUPERVISED"] = "1"
        self.echo = echo
        self.logs = folder / "logs"
        self.stop_signal: str | None = None
        self._server: ForkServer | None = None
        self._exits: dict[int, int] = {}

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        """Run attempts until one completes, the retries are spent or a stop is asked."""
        process.become_subreaper()
        previous = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            return self._attempts()
        finally:
            self._close_server()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _attempts(self) -> int:
        retries_used, failures_in_a_row = 0, 0
        while True:
            number = journal.next_attempt(self.folder)
            resumed, skipped = newest_checkpoint(self.folder / "checkpoints")
            for note in skipped:
                self._say(f"[yellow]{note}[/]")
            code, cause = self._attempt(number, resumed)
            if self.stop_signal is not None:
                self._status("stopped", f"stopped by {self.stop_signal} to the watchdog")
                return 128 + signal.Signals[self.stop_signal].value
            if code == 0:
                self._status("completed", None)
                return 0
            if code == 2:
                self._status("failed", f"attempt {number}: {cause}; not retried")
                return 2
            newest, _ = newest_checkpoint(self.folder / "checkpoints")
            failures_in_a_row = 1 if newest != resumed else failures_in_a_row + 1
            if retries_used >= self.policy.retries:
                self._status(
                    "failed", f"gave up after {retries_used} retries; attempt {number}: {cause}"
                )
                return 1
            retries_used += 1
            delay = self.policy.delay(failures_in_a_row)
            self._status("restarting", f"attempt {number}: {cause}")
            self._say(
                f"[bold yellow]attempt {number} ended: {cause}[/]; restarting from "
                f"{newest or 'the start'} in {delay:.1f}s (retry {retries_used} of "
                f"{self.policy.retries})"
            )
            if self._sleep(delay):
                self._status("stopped", f"stopped by {self.stop_signal} to the watchdog")
                return 128 + signal.Signals[self.stop_signal or "SIGTERM"].value

    def _attempt(self, number: int, resumed: str | None) -> tuple[int, str]:
        log_path = self.logs / f"attempt-{number}.log"
        env = {"TESSERA_ATTEMPT": str(number)}
        oom_before = process.oom_kill_count()
        child = self._start(log_path, env)
        self._event(
            "attempt",
            number=number,
            started=time.time(),
            resumed_from=resumed,
            host=os.uname().nodename,
            pid=child.pid,
        )
        self._status("running", None)
        self._say(f"attempt {number} (pid {child.pid}), log {log_path}")
        code, cause = self._watch(child, log_path)
        if code < 0 and not cause.startswith(("hang", "stopped")):
            oom = oom_before is not None and (process.oom_kill_count() or 0) > oom_before
            cause = process.describe_exit(code, oom_killed=oom)
        elif code > 0 and code != 2:
            detail = error_line(log_path)
            cause = f"{cause} ({detail})" if detail else cause
        self._event("attempt_end", number=number, ended=time.time(), cause=cause, exit_code=code)
        self._record_progress()
        return code, cause

    def _watch(self, child: Child, log_path: Path) -> tuple[int, str]:
        """Poll one attempt until it exits, hangs or is stopped: (exit code, cause)."""
        heartbeat = read_heartbeat(self.folder) or {}
        previous = (heartbeat.get("pid"), heartbeat.get("started"))  # an earlier attempt's
        started = False  # whether this attempt has written its first heartbeat
        last_step, last_progress = heartbeat.get("step"), time.monotonic()
        last_recorded = time.monotonic()
        offset = 0
        while True:
            self._collect_exits()
            offset = self._echo(log_path, offset)
            server = self._server
            if server is not None and server.pid in self._exits and child.pid not in self._exits:
                self._exits[child.pid] = signal.SIGKILL.value  # it died with its server
                self._server = None
            if child.pid in self._exits:
                code = process.exit_code(self._exits.pop(child.pid))
                child.returncode = code
                process.kill_tree(child.pid, grace=5.0, include_root=False, keep=self._keep())
                self._echo(log_path, offset)
                return code, process.describe_exit(code)
            if self.stop_signal is not None:
                self._end(child)
                return -signal.Signals[self.stop_signal].value, f"stopped by {self.stop_signal}"
            heartbeat = read_heartbeat(self.folder) or {}
            now = time.monotonic()
            if not started and (heartbeat.get("pid"), heartbeat.get("started")) != previous:
                started, last_progress = heartbeat.get("pid") is not None, now
            if started and heartbeat.get("step") != last_step:
                last_step, last_progress = heartbeat.get("step"), now
            # Until its first heartbeat an attempt is starting up (imports, data, rendezvous).
            timeout = self.policy.hang_timeout if started else self.policy.startup_timeout
            if timeout is not None and now - last_progress > timeout:
                what = f"no new step for {timeout:g}s (step {last_step})"
                if not started:
                    what = f"no heartbeat within {timeout:g}s of the start"
                self._say(f"[bold red]hang: {what}[/]: killing the attempt")
                self._end(child)
                return -signal.SIGKILL.value, f"hang: {what}"
            if now - last_recorded > 5.0:
                last_recorded = now
                self._record_progress(metrics=False)
            time.sleep(POLL)

    def _end(self, child: Child) -> None:
        process.kill_tree(child.pid, grace=10.0, keep=self._keep())
        deadline = time.monotonic() + 30
        while child.pid not in self._exits and time.monotonic() < deadline:
            self._collect_exits()
            time.sleep(0.02)
        child.returncode = process.exit_code(self._exits.pop(child.pid, 9))

    # -- processes -------------------------------------------------------------------------

    def _start(self, log_path: Path, env: dict[str, str]) -> Child:
        """The attempt's process: forked from the warm server if there is one, else fresh."""
        if self.policy.standby and _single_process(self.argv):
            if self._server is None or self._server.pid in self._exits:
                self._server = ForkServer(self.logs / "standby.log", self.env)
            server = self._server
            pid = server.start(self.argv, log_path, env, dead=lambda: self._server_gone(server))
            if pid is not None:
                return Child(pid)
            self._say("[yellow]the warm process server died; starting a fresh process[/]")
            self._server = None
        with open(log_path, "ab") as log:
            popen = process.spawn(
                [*self.program, *self.argv], log, env={**self.env, **env}, cwd=Path.cwd()
            )
        popen.returncode = 0  # reaped by the watchdog itself, never by Popen
        return Child(popen.pid)

    def _server_gone(self, server: ForkServer) -> bool:
        self._collect_exits()
        return server.pid in self._exits

    def _keep(self) -> list[int]:
        return [self._server.pid] if self._server is not None else []

    def _close_server(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        deadline = time.monotonic() + 10
        while server.pid not in self._exits and time.monotonic() < deadline:
            self._collect_exits()
            time.sleep(0.02)
        if server.pid not in self._exits:
            process.signal_all([server.pid], signal.SIGKILL)
        server.process.returncode = 0

    def _collect_exits(self) -> None:
        self._exits.update(process.reap())
        server = self._server
        if server is not None:
            self._exits.update(server.poll())

    # -- records ---------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> None:
        event = {"event": kind, **fields}
        journal.append(self.folder, event)
        if self.registry is not None and self.run_id is not None:
            journal.apply_event(self.registry, self.run_id, event)

    def _status(self, status: str, reason: str | None) -> None:
        self._event("status", status=status, reason=reason, time=time.time())

    def _record_progress(self, metrics: bool = True) -> None:
        if self.registry is None or self.run_id is None:
            return
        step, values = last_metrics(self.folder) if metrics else (None, {})
        heartbeat = read_heartbeat(self.folder) or {}
        step = heartbeat.get("step", step)
        fields: dict[str, Any] = {"last_step": step}
        if values:
            fields["last_metrics"] = values
        if step is not None or values:
            self.registry.update(self.run_id, **fields)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop_signal = signal.Signals(signum).name

    def _sleep(self, seconds: float) -> bool:
        """Sleep, waking early (True) if a stop is asked for."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.stop_signal is not None:
                return True
            self._collect_exits()
            time.sleep(min(POLL, max(deadline - time.monotonic(), 0)))
        return self.stop_signal is not None

    def _echo(self, log_path: Path, offset: int) -> int:
        """Copy what the attempt wrote since `offset` to the console."""
        if not self.echo:
            return offset
        try:
            with open(log_path, "rb") as log:
                log.seek(offset)
                data = log.read()
        except OSError:
            return offset
        if data:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        return offset + len(data)

    def _say(self, message: str) -> None:
        from rich.console import Console

        Console(stderr=True).print(f"[bold]watchdog[/]: {message}", highlight=False)


def _single_process(argv: list[str]) -> bool:
    """Whether the attempt is one process (no torchrun agent) and can start in a spare."""
    if argv[:1] != ["train"]:
        return False
    for index, item in enumerate(argv):
        if item == "--nproc" and index + 1 < len(argv) and argv[index + 1] != "1":
            return False
        if item.startswith("--nproc=") and item != "--nproc=1":
            return False
        if item in ("--nnodes", "--max-restarts", "--rdzv-endpoint", "--master-addr"):
            return False
    return True
