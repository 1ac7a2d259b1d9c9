"""Two real gloo ranks through `tessera train --nproc 2`: only rank 0 prints and writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tessera.loggers.jsonl import read_jsonl

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "fashion-mnist-resnet.yaml"


@pytest.mark.slow
def test_only_rank_zero_reports(tmp_path):
    command = [
        sys.executable,
        "-m",
        "tessera.cli",
        "train",
        str(RECIPE),
        "--nproc",
        "2",
        "max_duration=4ba",
        "eval_interval=2ba",
        f"run_dir={tmp_path}",
        "model.width=4",
        "save_interval=null",
        "loggers.progress={log_interval: 2}",
        "callbacks.speed_monitor={log_interval: 2}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout + done.stderr
    # One line per log step, from one rank (torchrun prefixes each line with its rank).
    assert out.count("[batch 2/4 ") == 1 and out.count("[batch 4/4 ") == 1
    assert out.count("eval at batch 2:") == 1
    assert "[default1]:[batch" not in out

    run = tmp_path / "fashion-mnist-resnet"
    assert [p.name for p in run.glob("metrics*.jsonl")] == ["metrics.jsonl"]
    records = list(read_jsonl(run / "metrics.jsonl"))
    assert [r["step"] for r in records if "loss/train" in r] == [2, 4]
    assert [r["step"] for r in records if "metrics/eval/accuracy" in r] == [2, 4]
    speeds = [r for r in records if "throughput/samples_per_sec" in r]
    assert [r["step"] for r in speeds] == [2, 4]
    for r in speeds:  # samples are counted over both ranks
        assert r["throughput/device/samples_per_sec"] == pytest.approx(
            r["throughput/samples_per_sec"] / 2
        )
