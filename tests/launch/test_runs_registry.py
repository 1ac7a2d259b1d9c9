"""The run registry: concurrent writers lose nothing, `tessera train` records its run, and
`tessera runs` reports bad registries, unknown names and vanished run folders clearly."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from launch_support import SRC, environment, tessera, tiny_recipe

from tessera.cli.main import main
from tessera.launch.registry import Registry

WRITER = textwrap.dedent(
    """
    import sys
    from tessera.launch.registry import Registry

    registry = Registry(sys.argv[1])
    writer, folder = int(sys.argv[2]), sys.argv[3]
    run_id = registry.record_run("shared", folder, status="running")
    for index in range(40):
        number = registry.start_attempt(run_id, number=writer * 1000 + index)
        registry.update(run_id, last_step=index, last_metrics={"writer": writer})
        registry.end_attempt(run_id, number, f"writer {writer} attempt {index}", 0)
    """
)


def test_four_processes_writing_two_runs_at_once_lose_no_record(tmp_path):
    path = tmp_path / "registry.db"
    Registry(path)  # created once; the writers race on everything after
    env = {"PYTHONPATH": str(SRC)}
    writers = []
    for writer in range(4):
        folder = tmp_path / f"run{writer % 2}"
        command = [sys.executable, "-c", WRITER, str(path), str(writer), str(folder)]
        writers.append(subprocess.Popen(command, env=env))
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0, 0, 0]
    runs = Registry(path).runs()
    assert len(runs) == 2  # one record per run folder, however many writers
    numbers = sorted(attempt.number for run in runs for attempt in run.attempts)
    assert numbers == sorted(w * 1000 + i for w in range(4) for i in range(40))
    assert all(attempt.ended and attempt.cause for run in runs for attempt in run.attempts)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_tessera_train_records_its_run(tmp_path):
    home = tmp_path / "home"
    recipe = tiny_recipe(tmp_path, max_duration="8ba")
    result = tessera("train", str(recipe), "seed=5", env=environment(home))
    assert result.returncode == 0, result.stderr
    (run,) = Registry(home / "registry.db").runs()
    assert (run.name, run.status, run.backend) == ("tiny", "completed", "local")
    assert run.folder == tmp_path / "runs" / "tiny"
    assert run.recipe_hash == hashlib.sha256(recipe.read_bytes()).hexdigest()[:16]
    assert run.overrides == ["seed=5"] and run.config["seed"] == 5
    assert run.config["model"]["name"] == "gpt"
    assert [(a.number, a.cause, a.exit_code) for a in run.attempts] == [(1, "completed", 0)]
    assert run.last_step == 8 and "metrics/eval/loss" in run.last_metrics


def test_a_registry_that_is_not_a_database_is_an_error_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TESSERA_HOME", str(tmp_path))
    (tmp_path / "registry.db").write_text("these are not the runs you are looking for\n" * 50)
    assert main(["runs", "list"]) == 2
    error = capsys.readouterr().err
    assert str(tmp_path / "registry.db") in error and "not a readable SQLite database" in error


def test_an_unknown_run_name_is_an_error_listing_the_known_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TESSERA_HOME", str(tmp_path))
    Registry().record_run("alpha", tmp_path / "alpha", status="completed")
    for action in ("show", "logs", "stop", "resume", "rm"):
        assert main(["runs", action, "beta"]) == 2
        error = capsys.readouterr().err
        assert "no run is called 'beta'" in error and "alpha" in error, (action, error)


def test_a_vanished_run_folder_is_reported_not_crashed_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TESSERA_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    run_id = Registry().record_run("gone", tmp_path / "moved-away", status="completed")
    assert main(["runs", "list"]) == 0
    listing = capsys.readouterr().out
    assert run_id in listing and "(missing)" in listing
    assert main(["runs", "show", "gone"]) == 0
    assert "missing (moved or deleted)" in capsys.readouterr().out
    assert main(["runs", "logs", "gone"]) == 2
    assert "moved-away is missing" in capsys.readouterr().err
    assert main(["runs", "rm", "gone"]) == 0
    assert Registry().runs() == []


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--retries", "-1"], "--retries"),
        (["--hang-timeout", "soon"], "--hang-timeout"),
        (["--partition", "gpu"], "--partition"),
        (["--image", "x:1"], "--image"),
        (["--slurm", "--time", "tomorrow"], "--time"),
        (["--slurm", "--k8s"], "--slurm and --k8s"),
        (["--frobnicate"], "--frobnicate"),
        (["--nodes", "2"], "--nodes"),
    ],
)
def test_bad_launch_options_exit_2_naming_the_option(
    tmp_path, monkeypatch, capsys, arguments, named
):
    monkeypatch.setenv("TESSERA_HOME", str(tmp_path))
    recipe = tiny_recipe(tmp_path)
    assert main(["launch", str(recipe), *arguments]) == 2
    error = capsys.readouterr().err
    assert named in error, error
    assert Registry().runs() == []  # nothing was started or recorded


def test_slurm_without_sbatch_on_path_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TESSERA_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["launch", str(tiny_recipe(tmp_path)), "--slurm"]) == 2
    assert "--slurm: sbatch is not on PATH" in capsys.readouterr().err
