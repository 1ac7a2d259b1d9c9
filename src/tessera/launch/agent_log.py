"""What torchrun's elastic agent reports, said once and in Tessera's words.

The agent logs through the `torch.distributed.elastic` loggers in a glog format ("W1201
21:54:29 ... Sending process 18023 closing signal SIGTERM"). While `tessera train --nproc`
runs the agent, those records come here instead: a rank's failure and the restart that follows
become one line ("rank 1 died (signal SIGKILL); restarting attempt 1/2"), the agent stopping
the other ranks is left to the final report, and any other warning is shown as its plain
message. `describe_exit` and `classify` are shared with that report.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

from tessera.parallel.process_group import LOST_CONTACT_EXIT

AGENT_LOGGER = "torch.distributed.elastic"


def describe_exit(code: int) -> str:
    """'signal SIGKILL' for a process killed by a signal, else 'exit code 2'."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def rank_name(local_rank: int, single_node: bool) -> str:
    return f"rank {local_rank}" if single_node else f"local rank {local_rank} on this node"


def classify(failures: dict[int, Any]) -> tuple[list[int], list[int]]:
    """(ranks that failed by themselves, ranks the agent stopped because of them).

    When one rank fails the agent sends SIGTERM to the others; a rank that ended with SIGTERM
    was stopped, and one that exited LOST_CONTACT_EXIT lost its peers, unless every rank did
    (then the first one to go is the cause)."""
    consequences = (-signal.SIGTERM, LOST_CONTACT_EXIT)  # stopped, or lost its peers
    stopped = [r for r, f in failures.items() if f.exitcode in consequences]
    failed = [r for r in failures if r not in stopped]
    if not failed and stopped:
        first = min(stopped, key=lambda r: (failures[r].timestamp, r))
        failed, stopped = [first], [r for r in stopped if r != first]
    return sorted(failed), sorted(stopped)


class _AgentHandler(logging.Handler):
    def __init__(self, console: Console, single_node: bool) -> None:
        super().__init__(logging.INFO)
        self.console = console
        self.single_node = single_node
        self.last_failure: tuple[int, int] | None = None  # (local rank, exit code)

    def emit(self, record: logging.LogRecord) -> None:
        template = str(record.msg)
        arguments = record.args if isinstance(record.args, tuple) else ()
        try:
            if template.startswith("failed (exitcode") and len(arguments) >= 2:
                self.last_failure = (int(arguments[1]), int(arguments[0]))
            elif "attempts left" in template and len(arguments) >= 4:
                self._restarting(int(arguments[2]), int(arguments[3]))
            elif "closing signal" in template:
                pass  # the agent stopping the other ranks: the final report names them
            elif record.levelno >= logging.WARNING:
                text = record.getMessage().strip().replace("*", "").strip()
                if text:
                    self.console.print(f"torchrun: {text}", markup=False, highlight=False)
        except Exception:  # a record of another shape: never let reporting break the run
            self.handleError(record)

    def _restarting(self, attempts_left: int, max_restarts: int) -> None:
        attempt = max_restarts - attempts_left + 1
        if self.last_failure is None:
            what = "a rank failed"
        else:
            local_rank, code = self.last_failure
            name = rank_name(local_rank, self.single_node)
            if code == LOST_CONTACT_EXIT:  # the agent saw the consequence before the cause
                what = f"another rank went away ({name} lost contact with it first)"
            else:
                verb = "died" if code < 0 else "failed"
                what = f"{name} {verb} ({describe_exit(code)})"
        self.console.print(
            f"[bold yellow]tessera[/]: {what}; restarting attempt {attempt}/{max_restarts} "
            "(every rank resumes from the newest valid checkpoint)"
        )
        self.last_failure = None


@contextmanager
def agent_messages(console: Console, single_node: bool) -> Iterator[None]:
    """Route the elastic agent's log records through `_AgentHandler` while the block runs."""
    logger = logging.getLogger(AGENT_LOGGER)
    handler = _AgentHandler(console, single_node)
    saved = logger.propagate, logger.level
    logger.addHandler(handler)
    logger.propagate = False  # not also through torch's own glog-style handler
    logger.setLevel(logging.INFO)  # the restart notice is an INFO record
    children = [
        child
        for name, child in logging.Logger.manager.loggerDict.items()
        if name.startswith(AGENT_LOGGER + ".") and isinstance(child, logging.Logger)
    ]
    levels = [child.level for child in children]
    for child in children:  # torch sets its own level (LOGLEVEL) on some of them
        child.setLevel(logging.NOTSET)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate, level = saved
        logger.setLevel(level)
        for child, child_level in zip(children, levels):
            child.setLevel(child_level)
