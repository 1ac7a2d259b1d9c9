"""`tessera launch` on this machine: record the run, then run it under the watchdog (in the
foreground, or detached in the background with `--detach`)."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from tessera.launch.options import WatchPolicy
from tessera.launch.record import register, run_folder
from tessera.launch.registry import Registry

_console = Console(stderr=True)


def train_argv(recipe: str, overrides: list[str], nproc: int = 1) -> list[str]:
    """The `tessera train` command each attempt runs; autoresume so a restart continues."""
    argv = ["train", str(Path(recipe).resolve()), *overrides, "autoresume=true"]
    return [*argv, "--nproc", str(nproc)] if nproc > 1 else argv


def supervise_local(
    config: Any,
    recipe: str,
    overrides: list[str],
    policy: WatchPolicy,
    nproc: int = 1,
    detach: bool = False,
) -> int:
    """Run the recipe under the watchdog here; returns the command's exit code."""
    from tessera.launch.watchdog import Watchdog

    folder = run_folder(config)
    folder.mkdir(parents=True, exist_ok=True)
    registry = Registry()
    launch = {"policy": dataclasses.asdict(policy), "nproc": nproc}
    run_id = register(
        registry, config, recipe, overrides, "local", "queued", launch=launch, pid=os.getpid()
    )
    if config.save_interval is None:
        _console.print(
            "[bold yellow]warning[/]: save_interval is off, so a restart begins from the start; "
            "set save_interval (e.g. save_interval=500ba) to resume where a crash left off"
        )
    if detach:
        return _detach(run_id, folder, registry=registry)
    _console.print(
        f"[bold]tessera launch[/]: run {config.name} ({run_id}) in {folder}; "
        f"{policy.retries} retries, hang timeout "
        f"{f'{policy.hang_timeout:g}s' if policy.hang_timeout else 'off'}"
    )
    watchdog = Watchdog(folder, train_argv(recipe, overrides, nproc), policy, run_id, registry)
    return watchdog.run()


def _detach(
    run_id: str, folder: Path, argv: list[str] | None = None, registry: Registry | None = None
) -> int:
    """Start `tessera ARGV` (default: this command without --detach) in its own session."""
    from tessera.launch import process

    if argv is None:
        argv = [item for item in sys.argv[1:] if item != "--detach"]
    log_path = folder / "logs" / "watchdog.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        child = process.spawn([sys.executable, "-m", "tessera.cli", *argv], log, detach=True)
    child.returncode = 0  # not ours to wait for: it outlives this command
    # Live from now on (the watchdog records itself as it starts; until then, its pid).
    (registry or Registry()).update(run_id, status="queued", reason=None, pid=child.pid)
    _console.print(
        f"run {run_id} started in the background (watchdog pid {child.pid}, log {log_path}); "
        f"follow it with `tessera runs logs {run_id} -f`, stop it with "
        f"`tessera runs stop {run_id}`"
    )
    return 0


def resume_local(run: Any, detach: bool = True) -> int:
    """Start a stopped or failed local run again, with its recorded recipe and policy."""
    from tessera.config import load_config

    policy = WatchPolicy(**run.launch.get("policy", {}))
    nproc = int(run.launch.get("nproc", 1))
    if detach:
        argv = ["launch", run.recipe, *run.overrides, *_policy_flags(policy, nproc)]
        return _detach(run.id, run.folder, argv)
    config = load_config(run.recipe, run.overrides)
    return supervise_local(config, run.recipe, run.overrides, policy, nproc)


def _policy_flags(policy: WatchPolicy, nproc: int) -> list[str]:
    flags = ["--retries", str(policy.retries), "--backoff", f"{policy.backoff}s"]
    flags += ["--max-backoff", f"{policy.max_backoff}s", "--nproc", str(nproc)]
    flags += ["--hang-timeout", f"{policy.hang_timeout}s" if policy.hang_timeout else "off"]
    startup = policy.startup_timeout
    flags += ["--startup-timeout", f"{startup}s" if startup else "off"]
    return flags if policy.standby else [*flags, "--no-standby"]
