"""Multi-process runs say what happened once, in Tessera's words: settings that cannot work at
the launch's world size are refused before torchrun starts; an error every rank hits is
printed once; ranks the launcher stopped are not called failed. (Through torchrun itself, a
rank killed under --max-restarts, said in one line, with no torchrun banner or glog lines:
tests/distributed/test_dist_failures.py.)"""

from __future__ import annotations

from hardening_support import tiny_gpt_recipe

from tessera.cli.main import main
from tessera.launch.local import _report_failure


def test_settings_that_cannot_split_over_the_processes_are_refused_before_torchrun(
    tmp_path, capsys
):
    recipe = tiny_gpt_recipe(tmp_path)
    overrides = ["data.batch_size=7", "parallelism.backend=nccl"]
    assert main(["train", str(recipe), *overrides, "--nproc", "2"]) == 2
    output = capsys.readouterr().err
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    assert "data.batch_size: 7 cannot be split evenly over 2 processes" in errors[0]
    assert "'nccl' needs CUDA GPUs" in errors[0]  # every problem at once
    assert "use backend 'gloo'" in errors[0]
    assert "process(es) per node" not in output  # no process was started
    assert not (tmp_path / "runs" / "gpt" / "logs").exists()


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
