"""Failures in multi-process runs: a killed rank under --max-restarts (said in one line, the
run resumes and ends bit-identical). Bad input is refused before any process starts:
tests/hardening/test_hard_launch.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from dist_support import TIMEOUT, environment, summary, tiny_recipe, weights


def workers(launcher: int) -> dict[int, int]:
    """{rank: pid} of the training processes the launcher started (read from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent != launcher:
                continue
            variables = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        for variable in variables:
            if variable.startswith(b"RANK="):
                found[int(variable[5:])] = int(entry.name)
    return found


def checkpoint_count(folder: Path) -> int:
    try:
        return len(json.loads((folder / "manifest.json").read_text())["checkpoints"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_killed_rank_restarts_and_ends_like_an_uninterrupted_run(tmp_path, ddp_run):
    recipe = tiny_recipe(tmp_path)
    run = tmp_path / "runs" / "tiny"
    command = [sys.executable, "-m", "tessera.cli", "train", str(recipe)]
    command += ["--nproc", "2", "--max-restarts", "1"]
    env = environment()
    del env["OMP_NUM_THREADS"]  # the launcher sets it, without torchrun's banner
    launcher = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        killed = None
        while killed is None and time.monotonic() < deadline and launcher.poll() is None:
            if checkpoint_count(run / "checkpoints") >= 1:  # mid-run, after a checkpoint
                pid = workers(launcher.pid).get(1)
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    killed = pid
            time.sleep(0.01)
        stdout, stderr = launcher.communicate(timeout=TIMEOUT)
    finally:
        if launcher.poll() is None:  # a failed test must not leave processes behind
            for pid in workers(launcher.pid).values():
                os.kill(pid, signal.SIGKILL)
            os.killpg(launcher.pid, signal.SIGKILL)
    assert killed is not None, f"the run ended before rank 1 could be killed:\n{stderr}"
    assert launcher.returncode == 0, stderr
    result = subprocess.CompletedProcess(command, 0, stdout, stderr)
    assert summary(result)["resumed_from"] is not None  # the restarted group autoresumed
    assert summary(result)["timestamp"]["batch"] == 24
    assert list((run / "logs").glob("*/attempt_1/1/stderr.log"))  # torchrun restarted it
    # said once, in Tessera's words: no traceback wall from rank 0, no torchrun banner
    # Which rank the agent sees fail first is a race: the killed one, or the one that lost it.
    assert (
        "rank 1 died (signal SIGKILL); restarting attempt 1/1" in stderr
        or "another rank went away (rank 0 lost contact with it first); restarting attempt 1/1"
        in stderr
    ), stderr
    assert "Traceback" not in stderr and "OMP_NUM_THREADS" not in stderr
    assert "torch/distributed/elastic" not in stderr
    # deterministic mode: bit for bit the weights of the run that was never interrupted
    resumed, uninterrupted = weights(run), weights(ddp_run["run"])
    assert sorted(resumed) == sorted(uninterrupted)
    assert all(torch.equal(resumed[name], uninterrupted[name]) for name in uninterrupted)
