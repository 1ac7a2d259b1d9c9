"""The watchdog's fork server: one process that imports the trainer once and forks each
single-process attempt from that warm state.

Importing torch, torchmetrics and the model and data modules takes seconds per process start;
a restart after a crash should not pay that again. The watchdog starts this server once per
launch and, for each attempt, writes one JSON line on its stdin
(`{"argv": [...], "log": PATH, "env": {...}}`). The server forks; the child starts a session of
its own, dies with the server (PR_SET_PDEATHSIG), sends its output to the attempt's log and
runs `tessera ARGV`. The server answers `{"pid": N}` on stdout, and `{"exit": N, "status": S}`
(a raw wait status) when that child ends. Closing stdin ends the server.

Forking is safe here because the server never runs a torch operation or starts a thread
before it forks: the child gets a clean, merely imported interpreter. Imports change no random
state, so a run started from the server is the same run, bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

# What a training process imports before its first batch: torch and torchmetrics (through
# tessera.config.build), and torch._dynamo, which the first optimizer imports (seconds).
WARM_MODULES = (
    "torch._dynamo",
    "tessera.config.build",
    "tessera.cli.main",
    "tessera.cli.train",
    "tessera.launch.local",
)


def _warm_up() -> None:
    import importlib

    from tessera.data.registry import DATASETS
    from tessera.models.registry import MODELS

    for module in WARM_MODULES:
        importlib.import_module(module)
    for registry in (MODELS, DATASETS):
        registry.names()  # imports every provider module


def _run_child(order: dict) -> None:
    """In the forked child: become the attempt's training process; never returns."""
    code = 1
    try:
        os.setsid()
        from tessera.launch.process import die_with_parent

        die_with_parent()
        os.environ.update(order.get("env", {}))
        descriptor = os.open(order["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        for stream in (1, 2):
            os.dup2(descriptor, stream)
        os.close(descriptor)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        sys.stdin = open(os.devnull)  # noqa: SIM115
        from tessera.cli.main import main as tessera

        code = tessera(order["argv"])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _tell(record: dict) -> None:
    os.write(1, (json.dumps(record) + "\n").encode())


def main() -> int:
    _warm_up()
    children: set[int] = set()
    pending = b""
    stdin = sys.stdin.buffer.raw.fileno() if hasattr(sys.stdin.buffer, "raw") else 0
    open_input = True
    while open_input or children:
        readable, _, _ = select.select([stdin] if open_input else [], [], [], 0.05)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            _tell({"exit": pid, "status": status})
        if not readable:
            continue
        data = os.read(stdin, 65536)
        if not data:
            open_input = False  # the watchdog is done with us (children still get reported)
            continue
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if not line.strip():
                continue
            order = json.loads(line)
            pid = os.fork()
            if pid == 0:
                _run_child(order)
            children.add(pid)
            _tell({"pid": pid})
    return 0


if __name__ == "__main__":
    sys.exit(main())


class ForkServer:
    """The watchdog's side: start the server, ask it for attempts, collect their exits."""

    def __init__(self, log: Path, env: dict[str, str]) -> None:
        from tessera.launch import process

        with open(log, "ab") as errors:
            self.process = process.spawn(
                [sys.executable, "-m", "tessera.launch.standby"],
                errors,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        assert self.process.stdout is not None
        self._out = self.process.stdout.fileno()
        os.set_blocking(self._out, False)
        self._buffer = b""
        self.exits: dict[int, int] = {}

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self, argv: list[str], log: Path, env: dict[str, str], dead: Any) -> int | None:
        """Fork an attempt; its pid, or None if the server died first (`dead()` says so)."""
        order = {"argv": argv, "log": str(log), "env": env}
        try:
            assert self.process.stdin is not None
            self.process.stdin.write((json.dumps(order) + "\n").encode())
            self.process.stdin.flush()
        except OSError:
            return None
        while True:  # the first answer waits for the server's imports
            select.select([self._out], [], [], 0.1)
            for record in self._read():
                if "pid" in record:
                    return int(record["pid"])
            if dead():
                return None

    def poll(self) -> dict[int, int]:
        """Exit statuses reported since the last call: pid -> raw wait status."""
        self._read()
        exits, self.exits = self.exits, {}
        return exits

    def _read(self) -> list[dict[str, Any]]:
        try:
            data = os.read(self._out, 65536)
        except BlockingIOError:
            data = b""
        self._buffer += data
        records = []
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            record = json.loads(line)
            if "exit" in record:
                self.exits[int(record["exit"])] = int(record["status"])
            records.append(record)
        return records

    def close(self) -> None:
        """No more attempts: the server exits once its children are reported."""
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
