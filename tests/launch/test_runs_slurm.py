"""`tessera launch --slurm` against a real single-node SLURM (started by the fixture): a job
that completes, one stopped by `tessera runs stop`, and one whose training process is killed
(the watchdog inside the job retries it) and which SLURM then requeues (it resumes again).

The three jobs are submitted together and run side by side (one core each), so the file
costs about as long as its longest job.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from launch_support import environment, heartbeat, tessera, tiny_recipe, wait_for

from tessera.launch import control, slurm
from tessera.launch.registry import Registry, Run

pytestmark = pytest.mark.slurm


@dataclass
class Job:
    env: dict[str, str]
    registry: Registry
    run: Run
    folder: Path

    def refreshed(self) -> Run:
        return control.refresh(self.registry, self.registry.run_by_id(self.run.id))

    def wait(self, status: str, timeout: float) -> Run:
        return wait_for(
            lambda: (run := self.refreshed()).status == status and run,
            timeout, f"job {self.run.job_id} to be {status}", poll=0.5,
        )  # fmt: skip


def _launch(folder: Path, cluster, *options: str, **fields) -> Job:
    folder.mkdir()
    home = folder / "home"
    env = environment(home, **cluster.env())
    recipe = tiny_recipe(folder, **fields)
    result = tessera("launch", str(recipe), "--slurm", *options, env=env, cwd=folder)
    assert result.returncode == 0, result.stderr
    registry = Registry(home / "registry.db")
    (run,) = registry.runs()
    return Job(env, registry, run, run.folder)


@pytest.fixture(scope="module")
def jobs(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm-jobs")
    os.environ["SLURM_CONF"] = cluster.env()["SLURM_CONF"]  # for this process's squeue, ...
    retry = ["--requeue", "--retries", "2", "--backoff", "0.1s"]
    # In the order the tests use them: the node runs two at a time, the third waits.
    submitted = {
        "retry": _launch(root / "retry", cluster, *retry, max_duration="400ba"),
        "complete": _launch(root / "complete", cluster, "--time", "10", max_duration="20ba"),
        "stop": _launch(root / "stop", cluster, max_duration="100000ba"),
    }
    yield submitted
    os.environ.pop("SLURM_CONF", None)


def test_a_failing_slurm_job_is_retried_and_a_requeued_one_resumes(jobs):
    job = jobs["retry"]
    assert "#SBATCH --requeue" in (job.folder / "launch.sbatch").read_text()

    def beat_after(step: int, not_pid: int | None = None):
        beat = heartbeat(job.folder)
        fresh = beat.get("pid") != not_pid and not beat.get("done")
        return beat if fresh and beat.get("step", -1) >= step else None

    while True:  # kill the rank-0 training process inside the job once it trains
        first = wait_for(lambda: beat_after(3), 240, "step 3", poll=0.05)
        try:
            os.kill(first["pid"], signal.SIGKILL)
            break
        except ProcessLookupError:
            continue  # it was between heartbeats of two processes; read again
    step = first["step"]
    wait_for(lambda: beat_after(step + 5, first["pid"]), 180, "the retried attempt to train")
    subprocess.run(["scontrol", "requeue", job.run.job_id], check=True, timeout=30)
    # SLURM holds a requeued job back for a while before it may start again; let it start.
    wait_for(lambda: slurm.job_state(job.run.job_id) == "PENDING", 60, "PENDING", poll=0.2)
    subprocess.run(
        ["scontrol", "update", f"JobId={job.run.job_id}", "StartTime=now"], check=True, timeout=30
    )
    done = job.wait("completed", 240)
    causes = [attempt.cause for attempt in done.attempts]
    assert len(causes) == 3 and causes[-1] == "completed", causes
    assert causes[0].startswith("exit code 1 (rank 0"), causes  # torchrun reports the lost rank
    assert "-9" in causes[0], causes
    assert causes[1].startswith("stopped by SIGTERM"), causes  # SLURM took the node back
    assert all(attempt.resumed_from for attempt in done.attempts[1:]), done.attempts
    outputs = "".join(path.read_text() for path in (job.folder / "logs").glob("slurm-*.out"))
    assert "(restart 1)" in outputs
    assert (job.folder / "final" / "model.safetensors").exists()


def test_a_slurm_job_trains_to_completion(jobs):
    job = jobs["complete"]
    assert job.run.backend == "slurm" and job.run.job_id
    script = (job.folder / "launch.sbatch").read_text()
    assert "#SBATCH --nodes=1" in script and "#SBATCH --no-requeue" in script
    assert "#SBATCH --time=10" in script
    assert "srun --nodes=1 --ntasks-per-node=1" in script and "torch.distributed.run" in script
    done = job.wait("completed", 240)
    assert (job.folder / "final" / "model.safetensors").exists()
    assert [attempt.cause for attempt in done.attempts] == ["completed"]
    assert slurm.job_state(job.run.job_id) == "COMPLETED"
    assert done.last_step == 20
    logs = tessera("runs", "logs", job.run.id, "--all", env=job.env)
    assert logs.returncode == 0 and '"batch": 20' in logs.stdout


def test_tessera_runs_stop_cancels_a_slurm_job(jobs):
    job = jobs["stop"]
    wait_for(lambda: slurm.job_state(job.run.job_id) == "RUNNING", 120, "RUNNING", poll=0.2)
    stopped = tessera("runs", "stop", job.run.id, env=job.env)
    assert stopped.returncode == 0, stopped.stderr
    assert f"cancelled SLURM job {job.run.job_id}" in stopped.stdout
    wait_for(lambda: slurm.job_state(job.run.job_id) == "CANCELLED", 60, "CANCELLED", poll=0.2)
    assert job.refreshed().status == "stopped"
