"""What `tessera runs` does to a run: bring its record up to date from its back-end, find its
logs, stop it, resume it, remove it. Each back-end answers for its own runs."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

from tessera.core.errors import UserError
from tessera.launch.heartbeat import read_heartbeat
from tessera.launch.process import alive
from tessera.launch.registry import Registry, Run, hostname


def refresh(registry: Registry, run: Run) -> Run:
    """The run's record after asking its back-end (SLURM, Kubernetes) how it is doing."""
    if not run.live:
        return run
    if run.backend == "slurm":
        from tessera.launch import slurm

        slurm.refresh(registry, run)
    elif run.backend == "k8s":
        from tessera.launch import kubernetes

        kubernetes.refresh(registry, run)
    else:
        return run
    return registry.run_by_id(run.id)


def shown_status(run: Run) -> str:
    """The status to show: a live local run whose process is gone is 'lost'."""
    local = run.backend == "local" and run.host == hostname()
    if run.live and local and run.pid and not alive(run.pid):
        return "lost"
    return run.status


def folder_problem(run: Run) -> str | None:
    """Why the run folder cannot be read, if it cannot (moved, deleted, another machine)."""
    if run.folder.is_dir():
        return None
    if run.host != hostname() and run.backend == "local":
        return f"run folder {run.folder} is on {run.host}, not here"
    return f"run folder {run.folder} is missing (moved or deleted)"


def last_step(run: Run) -> int | None:
    """The newest step known: the heartbeat's if the run folder is here, else the record's."""
    beat = read_heartbeat(run.folder) if run.live else None
    return beat.get("step") if beat else run.last_step


def log_files(run: Run) -> list[Path]:
    """The run's log files, oldest first: watchdog attempts, SLURM output, per-rank logs."""
    logs = run.folder / "logs"
    if not logs.is_dir():
        return []
    found = [
        path
        for path in logs.rglob("*")
        if path.is_file() and path.suffix in (".log", ".out") and path.name != "standby.log"
    ]
    return sorted(found, key=lambda path: (path.stat().st_mtime, path.name))


def newest_log(files: list[Path]) -> Path | None:
    """The log to show or follow: the newest attempt's (the watchdog's own log and SLURM's
    output repeat the attempts' lines), else the newest file."""
    attempts = [path for path in files if path.name.startswith("attempt-")]
    if attempts:
        return max(attempts, key=lambda path: int(path.stem.split("-")[1]))
    return files[-1] if files else None


def stop(registry: Registry, run: Run, wait: float = 60.0) -> str:
    """Ask the run to stop (SIGTERM to its watchdog, scancel, kubectl delete); what was done."""
    if not run.live:
        raise UserError(f"RUN: run {run.name} ({run.id}) is not running (it is {run.status})")
    if run.backend == "slurm":
        from tessera.launch import slurm

        return slurm.cancel(registry, run)
    if run.backend == "k8s":
        from tessera.launch import kubernetes

        return kubernetes.delete(registry, run)
    if run.host != hostname():
        raise UserError(
            f"RUN: run {run.name} runs on {run.host}; stop it there (`tessera runs stop "
            f"{run.id}` on {run.host})"
        )
    pid = run.pid
    if not pid or not alive(pid) or not _is_tessera(pid):
        registry.update(run.id, status="stopped", reason="its process was already gone")
        return f"run {run.id}: its process was already gone; marked stopped"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        raise UserError(f"run {run.id}: process {pid} did not stop within {wait:g}s of SIGTERM")
    if registry.run_by_id(run.id).live:  # a bare `tessera train` cannot record its own end
        registry.update(run.id, status="stopped", reason="stopped by tessera runs stop")
    return f"run {run.id}: sent SIGTERM to process {pid}; it stopped"


def _is_tessera(pid: int) -> bool:
    try:
        return b"tessera" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def resume(registry: Registry, run: Run, foreground: bool = False) -> int:
    """Start a run that is not running again, through the back-end it ran on."""
    if run.live and shown_status(run) != "lost":
        raise UserError(f"RUN: run {run.name} ({run.id}) is {run.status}; nothing to resume")
    if not run.recipe or not Path(run.recipe).exists():
        raise UserError(
            f"RUN: the recipe of run {run.id} ({run.recipe}) is gone; start it again with "
            "`tessera launch RECIPE` and the same name and run_dir"
        )
    if run.backend == "slurm":
        from tessera.launch import slurm

        return slurm.resubmit(registry, run)
    if run.backend == "k8s":
        from tessera.launch import kubernetes

        return kubernetes.redeploy(registry, run)
    from tessera.launch.supervise import resume_local

    return resume_local(run, detach=not foreground)


def remove(registry: Registry, run: Run, force: bool = False, delete_folder: bool = False) -> str:
    if run.live and shown_status(run) != "lost" and not force:
        raise UserError(
            f"RUN: run {run.name} ({run.id}) is {run.status}; stop it first, or give --force "
            "to forget it while it runs"
        )
    registry.remove(run.id)
    if delete_folder and run.folder.is_dir():
        shutil.rmtree(run.folder)
        return f"removed run {run.id} and deleted {run.folder}"
    return f"removed run {run.id} from the registry (its folder {run.folder} is kept)"
