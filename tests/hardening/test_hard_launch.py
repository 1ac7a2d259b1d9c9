"""Multi-process runs say what happened once, in Tessera's words: settings that cannot work at
the launch's world size are refused before torchrun starts; an error every rank hits is
printed once; ranks the launcher stopped are not called failed; no torchrun banner or glog
lines. (A rank killed under --max-restarts: tests/distributed/test_dist_failures.py.)"""

from __future__ import annotations

import os

import pytest
from hardening_support import run_cli, tiny_gpt_recipe

from tessera.launch.local import _report_failure


def test_settings_that_cannot_split_over_the_processes_are_refused_before_torchrun(tmp_path):
    recipe = tiny_gpt_recipe(tmp_path)
    result = run_cli(
        "train",
        str(recipe),
        "data.batch_size=7",
        "parallelism.backend=nccl",
        "--nproc",
        "2",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "data.batch_size: 7 cannot be split evenly over 2 processes" in errors[0]
    assert "'nccl' needs CUDA GPUs" in errors[0]  # every problem at once
    assert "process(es) per node" not in result.stderr  # no process was started
    assert not (tmp_path / "runs" / "gpt" / "logs").exists()


@pytest.mark.slow
def test_an_error_every_rank_hits_is_printed_once(tmp_path):
    recipe = tiny_gpt_recipe(tmp_path)
    missing = tmp_path / "no-such-text.txt"
    env_without_omp = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    result = run_cli(
        "train",
        str(recipe),
        f"data.text={missing}",
        "--nproc",
        "2",
        cwd=tmp_path,
        timeout=150,
        env=env_without_omp,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert output.count(str(missing)) == 1, output  # the DataError, once (not once per rank)
    assert "rank 0 failed (exit code 2" in output or "rank 1 failed (exit code 2" in output
    assert "Traceback" not in output
    assert "OMP_NUM_THREADS" not in output  # torchrun's banner
    assert "torch/distributed/elastic" not in output  # the agent's glog lines


def _failed(failures: dict[int, tuple[int, int]]):
    """What torchrun raises when ranks fail: {rank: (exit code, time it failed)}."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    real = {}
    for rank, (exitcode, timestamp) in failures.items():
        real[rank] = ProcessFailure(rank, 1000 + rank, exitcode, "")
        real[rank].timestamp = timestamp
    return ChildFailedError("tessera.cli", real)


def _logs(folder, texts: dict[int, str]):
    for local_rank, text in texts.items():
        path = folder / "run-id" / "attempt_0" / str(local_rank) / "stderr.log"
        path.parent.mkdir(parents=True)
        path.write_text(text)
    return folder


def test_ranks_the_launcher_stopped_are_not_called_failed(tmp_path, capsys):
    error = _failed({0: (-15, 20), 1: (-9, 10), 2: (-15, 21)})
    logs = _logs(tmp_path, {0: "training...\n", 1: "training...\n", 2: "training...\n"})
    assert _report_failure(error, logs) == 1
    report = capsys.readouterr().err
    assert "rank 1 died (signal SIGKILL, pid 1001)" in report
    assert "ranks 0, 2 stopped by the launcher (SIGTERM)" in report
    assert "rank 0 failed" not in report and "rank 0 died" not in report


def test_the_same_error_of_every_rank_is_shown_once(tmp_path, capsys):
    error = _failed({0: (2, 10), 1: (2, 10)})
    text = "error: data.text: no-such.txt does not exist\n"
    logs = _logs(tmp_path, {0: "loading\n" + text, 1: text})
    assert _report_failure(error, logs) == 2  # bad input, as in a single process
    report = capsys.readouterr().err
    assert report.count("does not exist") == 0  # rank 0's own output is on the console already
    assert "rank 0 failed (exit code 2" in report and "rank 1 failed (exit code 2" in report
    other = _failed({0: (-15, 11), 1: (2, 10)})
    _report_failure(other, _logs(tmp_path / "b", {0: "loading\n", 1: text}))
    assert capsys.readouterr().err.count("does not exist") == 1  # rank 1's, once
