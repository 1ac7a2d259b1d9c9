"""Chaos under the watchdog: real `tessera launch` processes, killed and frozen for real.

SIGKILL at five random moments under --retries 20: the run finishes by itself, bit-identical
to an uninterrupted deterministic run, with six attempts and their causes in the registry.
A frozen process (SIGSTOP: no step advances) is killed after the hang timeout and restarted.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
from launch_support import (
    assert_bit_identical,
    environment,
    heartbeat,
    start,
    tessera,
    tiny_recipe,
    wait_for,
    weights,
)

from tessera.launch import journal, process
from tessera.launch.registry import Registry


def test_sigkill_five_times_completes_unattended_and_bit_exact(tmp_path):
    home = tmp_path / "home"
    env = environment(home)
    recipe = tiny_recipe(tmp_path)
    run = tmp_path / "runs" / "tiny"
    # The uninterrupted reference trains at the same time, in its own run folder.
    reference = start(
        "train", str(recipe), f"run_dir={tmp_path / 'reference'}", env=env,
        log=tmp_path / "reference.log",
    )  # fmt: skip
    watched = start(
        "launch", str(recipe), "--retries", "20", "--backoff", "0.05s", "--hang-timeout", "off",
        env=env, log=tmp_path / "launch.log",
    )  # fmt: skip
    rng = random.Random(time.time_ns())
    targets = sorted(rng.sample(range(3, 52), 5))  # of 60 batches
    killed: list[tuple[int, int]] = []
    for target in targets:
        # The newest training process, once it has reached the target batch.
        def reached(target=target):
            beat = heartbeat(run)
            fresh = beat.get("pid") and beat["pid"] not in [pid for pid, _ in killed]
            return beat if fresh and beat.get("step", -1) >= target else None

        beat = wait_for(reached, 90, f"step {target} (killed so far: {killed})")
        time.sleep(rng.uniform(0, 0.03))  # anywhere inside a batch, or a checkpoint write
        os.kill(beat["pid"], signal.SIGKILL)
        killed.append((beat["pid"], beat["step"]))
    assert watched.wait(timeout=120) == 0, (tmp_path / "launch.log").read_text()
    assert reference.wait(timeout=60) == 0, (tmp_path / "reference.log").read_text()

    assert_bit_identical(weights(run), weights(tmp_path / "reference" / "tiny"))
    (record,) = [r for r in Registry(home / "registry.db").runs() if r.folder == run]
    assert record.status == "completed"
    causes = [attempt.cause for attempt in record.attempts]
    assert causes == ["killed by SIGKILL"] * 5 + ["completed"], (causes, killed)
    resumed = [attempt.resumed_from for attempt in record.attempts]
    assert resumed[0] is None and all(resumed[1:]), resumed  # every restart from a checkpoint
    assert record.last_step == 60
    shown = tessera("runs", "show", record.id, env=env)
    assert shown.returncode == 0 and shown.stdout.count("killed by SIGKILL") == 5


def test_a_frozen_run_is_killed_after_the_hang_timeout_and_restarted(tmp_path):
    home = tmp_path / "home"
    env = environment(home)
    recipe = tiny_recipe(tmp_path, max_duration="40ba")
    run = tmp_path / "runs" / "tiny"
    watched = start(
        "launch", str(recipe), "--retries", "2", "--backoff", "0.05s", "--hang-timeout", "2s",
        env=env, log=tmp_path / "launch.log",
    )  # fmt: skip
    beat = wait_for(lambda: heartbeat(run).get("step", -1) >= 5 and heartbeat(run), 90, "step 5")
    os.kill(beat["pid"], signal.SIGSTOP)  # a hang: alive, but no step moves any more
    frozen = time.time()
    assert watched.wait(timeout=90) == 0, (tmp_path / "launch.log").read_text()

    (record,) = Registry(home / "registry.db").runs()
    first, second = record.attempts
    assert first.cause.startswith("hang: no new step for 2s"), first.cause
    assert first.ended - first.started < 90
    detected = first.ended - frozen
    assert 1.5 <= detected <= 6.0, f"hang detected {detected:.1f}s after the freeze"
    assert second.cause == "completed" and second.resumed_from is not None
    assert record.status == "completed" and record.last_step == 40


@pytest.mark.slow  # two attempts of three processes each (about a minute on two cores)
def test_a_killed_torchrun_agent_leaves_no_rank_behind_and_the_run_completes(tmp_path):
    home = tmp_path / "home"
    env = environment(home)
    recipe = tiny_recipe(tmp_path, max_duration="40ba")
    run = tmp_path / "runs" / "tiny"
    watched = start(
        "launch", str(recipe), "--nproc", "2", "--retries", "1", "--backoff", "0s",
        env=env, log=tmp_path / "launch.log",
    )  # fmt: skip
    beat = wait_for(lambda: heartbeat(run).get("step", -1) >= 3 and heartbeat(run), 120, "step 3")
    (attempt,) = [e for e in journal.read(run) if e["event"] == "attempt"]
    os.kill(attempt["pid"], signal.SIGKILL)  # the agent: its two ranks are orphaned at once
    assert watched.wait(timeout=150) == 0, (tmp_path / "launch.log").read_text()
    assert not process.alive(beat["pid"]), "rank 0 of the killed attempt is still running"
    (record,) = Registry(home / "registry.db").runs()
    assert [a.cause for a in record.attempts] == ["killed by SIGKILL", "completed"]
    assert record.attempts[1].resumed_from is not None and record.last_step == 40
