"""The watchdog's policy on real processes (small Python programs, no training): retries with
doubling backoff until they are spent, bad input never retried; and the whole local life of
a run: `launch --detach`, `runs stop`, `runs resume`, `runs logs -f` to its end."""

from __future__ import annotations

import sys

from launch_support import environment, heartbeat, tessera, tiny_recipe, wait_for

from tessera.launch import journal
from tessera.launch.options import WatchPolicy
from tessera.launch.registry import Registry
from tessera.launch.watchdog import Watchdog


def _watch(tmp_path, program: str, policy: WatchPolicy):
    registry = Registry(tmp_path / "registry.db")
    folder = tmp_path / "run"
    run_id = registry.record_run("run", folder, status="queued")
    watchdog = Watchdog(
        folder, ["-c", program], policy, run_id, registry, echo=False, program=[sys.executable]
    )
    return watchdog.run(), registry.run_by_id(run_id), folder


def test_retries_back_off_doubling_then_the_run_fails_with_the_cause(tmp_path):
    program = "import sys; print('ValueError: the data is cursed', file=sys.stderr); sys.exit(3)"
    policy = WatchPolicy(retries=3, backoff=0.2, max_backoff=0.5, standby=False)
    code, run, folder = _watch(tmp_path, program, policy)
    assert code == 1 and run.status == "failed"
    causes = [attempt.cause for attempt in run.attempts]
    assert causes == ["exit code 3 (ValueError: the data is cursed)"] * 4
    assert run.reason == f"gave up after 3 retries; attempt 4: {causes[-1]}"
    gaps = [b.started - a.ended for a, b in zip(run.attempts, run.attempts[1:])]
    assert [round(gap, 1) >= wait for gap, wait in zip(gaps, (0.2, 0.4, 0.5))] == [True] * 3
    assert gaps[2] < 1.5  # capped at max_backoff
    events = [event["event"] for event in journal.read(folder)]
    assert events.count("attempt") == 4 and events[-1] == "status"
    assert (folder / "logs" / "attempt-4.log").read_text().startswith("ValueError")


def test_bad_input_is_not_retried(tmp_path):
    code, run, _ = _watch(tmp_path, "raise SystemExit(2)", WatchPolicy(retries=5, backoff=0))
    assert code == 2 and run.status == "failed"
    assert [attempt.cause for attempt in run.attempts] == ["bad input (exit code 2)"]
    assert run.reason.endswith("not retried")


def test_a_detached_run_is_stopped_resumed_and_followed_to_its_end(tmp_path):
    home = tmp_path / "home"
    env = environment(home)
    recipe = tiny_recipe(tmp_path, max_duration="300ba")
    launched = tessera("launch", str(recipe), "--detach", "--backoff", "0s", env=env)
    assert launched.returncode == 0, launched.stderr
    (run,) = Registry(home / "registry.db").runs()
    assert f"run {run.id} started in the background" in launched.stderr
    wait_for(lambda: heartbeat(run.folder).get("step", -1) >= 3, 90, "training to begin")

    stopped = tessera("runs", "stop", run.id, env=env)
    assert stopped.returncode == 0, stopped.stderr
    record = Registry(home / "registry.db").run_by_id(run.id)
    assert record.status == "stopped" and record.reason == "stopped by SIGTERM to the watchdog"
    assert record.attempts[-1].cause == "stopped by SIGTERM"
    assert not (run.folder / "final").exists()
    again = tessera("runs", "stop", run.id, env=env)
    assert again.returncode == 2 and "is not running" in again.stderr

    resumed = tessera("runs", "resume", run.id, env=env)
    assert resumed.returncode == 0, resumed.stderr
    followed = tessera("runs", "logs", run.id, "-f", env=env, timeout=180)
    assert followed.returncode == 0, followed.stderr
    assert '"batch": 300' in followed.stdout  # the summary line of the finished run
    record = Registry(home / "registry.db").run_by_id(run.id)
    assert record.status == "completed" and len(record.attempts) == 2
    assert record.attempts[1].resumed_from is not None
