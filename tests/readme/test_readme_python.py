"""The README's Python example, run as written: on one process and with DDP on two (torchrun,
gloo on CPU); both train, evaluate and export the model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def example() -> str:
    blocks = re.findall(r"```python\n(# train.py\n.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1, "the README has one train.py example"
    return blocks[0]


@pytest.mark.parametrize("processes", [1, 2])
def test_readme_python_example_trains(tmp_path, shared_data, processes):
    script = tmp_path / "train.py"
    script.write_text(example())
    env = {**os.environ, "TESSERA_DATA_DIR": str(shared_data), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
        env.pop(name, None)
    command = [sys.executable, str(script)]
    if processes > 1:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={processes}",
            str(script),
        ]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "mlp"
    assert (run / "final" / "model.safetensors").exists()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    accuracy = [r["metrics/eval/accuracy"] for r in records if "metrics/eval/accuracy" in r]
    assert accuracy and accuracy[-1] > 0.8  # one epoch of a small MLP on the real images
    steps = max(r["step"] for r in records if "step" in r)
    assert steps == -(-60000 // (64 * processes))  # each process reads its half of an epoch
