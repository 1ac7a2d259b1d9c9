"""Kill a real training process with SIGKILL at random steps; the resumed run ends bit-exact.

Deterministic mode, shuffled data, two dataloader worker processes, checkpoints every batch.
"""

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kill_support import kill_after
from safetensors.torch import load_file

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "fashion-mnist-resnet.yaml"


def command(run_dir: Path, data_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tessera.cli",
        "train",
        str(RECIPE),
        f"run_dir={run_dir}",
        f"data.path={data_dir}",
        "deterministic=true",
        "seed=3",
        "max_duration=2ep",
        "data.train_subset=512",
        "data.batch_size=32",
        "data.num_workers=2",
        "data.eval_subset=200",
        "model.width=4",
        "save_interval=1ba",
        "keep_last=2",
        "eval_interval=1ep",
        "loggers={}",
        "callbacks={}",
    ]


@pytest.mark.slow
def test_sigkill_at_random_steps_then_resume_is_bit_exact(tmp_path, fashion_mnist_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = subprocess.run(
        command(tmp_path / "reference", fashion_mnist_dir),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert reference.returncode == 0, reference.stderr

    rng = random.Random(int(time.time()))
    targets = sorted(rng.sample(range(2, 30), 3))  # 32 batches in all
    killed_at = []
    checkpoints = tmp_path / "killed" / "fashion-mnist-resnet" / "checkpoints"
    for target in targets:
        run = command(tmp_path / "killed", fashion_mnist_dir)
        killed_at.append(kill_after(run, env, checkpoints, target, wait_s=300))
    final = subprocess.run(
        command(tmp_path / "killed", fashion_mnist_dir),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout.strip().splitlines()[-1])
    assert summary["resumed_from"] is not None, f"killed at {killed_at}"

    expected = load_file(
        tmp_path / "reference" / "fashion-mnist-resnet" / "final" / "model.safetensors"
    )
    actual = load_file(tmp_path / "killed" / "fashion-mnist-resnet" / "final" / "model.safetensors")
    assert expected.keys() == actual.keys()
    different = [name for name in expected if not (expected[name] == actual[name]).all()]
    assert not different, f"killed at batches {killed_at}; differing tensors: {different}"
