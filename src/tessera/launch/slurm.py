"""The SLURM back-end: an sbatch script, submitted, tracked and cancelled.

The batch script runs the watchdog on the job's first node; the watchdog runs one `srun` step
(one task per node), and each task starts torchrun with a c10d rendezvous on the first node,
so the job is `--nodes` x `--nproc-per-node` ranks. A crash or hang inside the allocation is
retried by the watchdog there; with `--requeue`, SLURM itself starts the script again after a
node failure or preemption, and the run resumes from its checkpoint. The watchdog writes the
run folder's journal; `tessera runs` reads it and SLURM's job state (squeue, scontrol, sacct)
into the registry on this machine.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from tessera.core.errors import UserError
from tessera.launch import journal
from tessera.launch.heartbeat import read_heartbeat
from tessera.launch.options import ClusterOptions, WatchPolicy
from tessera.launch.record import register, run_folder
from tessera.launch.registry import Registry, Run
from tessera.launch.supervise import train_argv

_console = Console(stderr=True)

QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED"}
RUNNING = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"}
STOPPED = {"CANCELLED"}
# Anything else that ends a job (FAILED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, PREEMPTED, ...)
# is a failure.


def require(command: str = "sbatch") -> str:
    path = shutil.which(command)
    if path is None:
        raise UserError(
            f"--slurm: {command} is not on PATH, so no job can be submitted from here; run "
            "this on a SLURM login node (or add SLURM's bin folder to PATH)"
        )
    return path


def batch_script(
    run_id: str,
    folder: Path,
    recipe: str,
    overrides: list[str],
    policy: WatchPolicy,
    options: ClusterOptions,
    python: str = sys.executable,
    workdir: Path | None = None,
) -> str:
    """The sbatch script of a run."""
    lines = [
        "#!/bin/bash",
        f"# Written by `tessera launch --slurm` for run {folder.name} ({run_id}).",
        f"#SBATCH --job-name=tessera-{folder.name}",
        f"#SBATCH --nodes={options.nodes}",
        "#SBATCH --ntasks-per-node=1",
    ]
    if options.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={options.gpus_per_node}")
    if options.cpus_per_task:
        lines.append(f"#SBATCH --cpus-per-task={options.cpus_per_task}")
    for flag, value in (
        ("time", options.time),
        ("partition", options.partition),
        ("account", options.account),
    ):
        if value:
            lines.append(f"#SBATCH --{flag}={value}")
    lines.append("#SBATCH --requeue" if options.requeue else "#SBATCH --no-requeue")
    lines += [
        f"#SBATCH --output={folder / 'logs' / 'slurm-%j.out'}",
        "#SBATCH --open-mode=append",
        f"#SBATCH --chdir={workdir or Path.cwd()}",
        *(f"#SBATCH {argument}" for argument in options.sbatch_args),
        "set -eu",
        f"export TESSERA_RUN_ID={run_id}",
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        _port_line(options),
        'echo "tessera: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on '
        '$SLURM_JOB_NODELIST; rendezvous $head_node:$port"',
    ]
    watchdog = [python, "-m", "tessera.launch.job", str(folder), _policy_json(policy), "--"]
    command = [*srun_command(options), *torchrun_command(options, python)]
    command += ["--module", "tessera.cli", *train_argv(recipe, overrides)]
    rendezvous = '--rdzv-endpoint="$head_node:$port"'
    body = " ".join(shlex.quote(part) for part in [*watchdog, *command])
    body = body.replace("--rdzv-endpoint=HEAD", rendezvous)
    body = body.replace("--rdzv-id=JOB", '--rdzv-id="$SLURM_JOB_ID"')
    lines.append(f"exec {body}")
    return "\n".join(lines) + "\n"


def _port_line(options: ClusterOptions) -> str:
    if options.port is not None:
        return f"port={options.port}"
    # Jobs that share a node must not meet on the same port: spread them by job id.
    return "port=$((29500 + SLURM_JOB_ID % 1000))"


def srun_command(options: ClusterOptions) -> list[str]:
    return [
        "srun",
        f"--nodes={options.nodes}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
    ]


def torchrun_command(options: ClusterOptions, python: str) -> list[str]:
    """torchrun on each node (the rendezvous endpoint and id are filled in by the script)."""
    return [
        python,
        "-m",
        "torch.distributed.run",
        f"--nnodes={options.nodes}",
        f"--nproc-per-node={options.processes_per_node}",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=HEAD",
        "--rdzv-id=JOB",
        "--max-restarts=0",  # restarts are the watchdog's: it resumes from checkpoints
    ]


def _policy_json(policy: WatchPolicy) -> str:
    return json.dumps(dataclasses.asdict(policy), separators=(",", ":"))


def submit(
    config: Any, recipe: str, overrides: list[str], policy: WatchPolicy, options: ClusterOptions
) -> int:
    """Write the script, submit it, record the job; returns the exit code."""
    require("sbatch")
    folder = run_folder(config)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    registry = Registry()
    launch = {"policy": dataclasses.asdict(policy), "cluster": dataclasses.asdict(options)}
    run_id = register(registry, config, recipe, overrides, "slurm", "queued", launch=launch)
    script = folder / "launch.sbatch"
    script.write_text(batch_script(run_id, folder, recipe, overrides, policy, options))
    result = subprocess.run(
        ["sbatch", "--parsable", str(script)], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        registry.update(run_id, status="failed", reason=f"sbatch: {result.stderr.strip()}")
        raise UserError(
            f"--slurm: sbatch refused the job ({result.stderr.strip()}); the script is "
            f"{script}: check --partition, --account, --time and --gpus-per-node"
        )
    job_id = result.stdout.strip().split(";")[0]
    registry.update(run_id, job_id=job_id)
    _console.print(
        f"submitted run {config.name} ({run_id}) as SLURM job {job_id}; script {script}; "
        f"follow it with `tessera runs logs {run_id} -f`"
    )
    return 0


def resubmit(registry: Registry, run: Run) -> int:
    from tessera.config import load_config

    policy = WatchPolicy(**run.launch["policy"])
    options = ClusterOptions(**run.launch["cluster"])
    config = load_config(run.recipe, run.overrides)
    return submit(config, str(run.recipe), run.overrides, policy, options)


def _run(command: list[str]) -> str | None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def job_state(job_id: str) -> str | None:
    """SLURM's state of the job: squeue while it is known there, then scontrol, then sacct."""
    text = _run(["squeue", "-h", "-j", job_id, "-o", "%T"])
    if text and text.strip():
        return text.split()[0]
    text = _run(["scontrol", "show", "job", job_id, "-o"])
    if text:
        for field in text.split():
            if field.startswith("JobState="):
                return field.split("=", 1)[1]
    for command in (["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State"], ["sacct", "-c"]):
        text = _run(command if command[1] != "-c" else [*command, "-n", "-P", "-j", job_id])
        if text and text.strip():
            return text.split()[0].rstrip("+")
    return None


def status_of(state: str | None, journal_status: dict[str, Any] | None) -> tuple[str, str | None]:
    """The registry status (and reason) for a SLURM state and the watchdog's last word."""
    said = journal_status or {}
    if state is None:
        return said.get("status", "queued"), said.get("reason")
    name = state.split()[0].upper()
    if name in QUEUED:
        return "queued", f"SLURM job state {name}"
    if name in RUNNING:
        live = said.get("status") if said.get("status") in ("running", "restarting") else None
        return live or "running", said.get("reason")
    if name == "COMPLETED":
        return "completed", None
    if name in STOPPED:
        return "stopped", said.get("reason") or "SLURM job cancelled"
    reason = f"SLURM job state {name}"
    return "failed", f"{reason}; {said['reason']}" if said.get("reason") else reason


def refresh(registry: Registry, run: Run) -> None:
    """Bring a SLURM run's record up to date: its attempts from the journal, its status from
    SLURM's job state, its step from the heartbeat."""
    if not run.job_id:
        return
    journal.apply(registry, run.id, run.folder, status=False)
    status, reason = status_of(job_state(run.job_id), journal.last_status(run.folder))
    fields: dict[str, Any] = {"status": status, "reason": reason}
    beat = read_heartbeat(run.folder)
    if beat:
        fields["last_step"] = beat.get("step")
    registry.update(run.id, **fields)


def cancel(registry: Registry, run: Run) -> str:
    require("scancel")
    if not run.job_id:
        raise UserError(f"RUN: run {run.id} has no SLURM job id (it was never submitted)")
    result = subprocess.run(["scancel", run.job_id], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise UserError(f"scancel {run.job_id} failed: {result.stderr.strip()}")
    registry.update(run.id, status="stopped", reason="cancelled by tessera runs stop (scancel)")
    return f"run {run.id}: cancelled SLURM job {run.job_id}"
