"""Kill `tessera train` with SIGKILL at a random moment while the char GPT (dropout 0.1) trains
from streaming token shards with two DataLoader workers; the same command resumes, and the run
ends with weights bit-identical to a run that was never interrupted. (Before the fix the first
checkpoint after any resume already differed; tests/core/test_resume_exact.py kills a
Fashion-MNIST run three times.)"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kill_support import kill_after
from safetensors.torch import load_file
from streaming_support import SHAKESPEARE, isolated_cache  # noqa: F401

from tessera.cli.main import main

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "shakespeare-char.yaml"
BATCHES = 16


def command(run_dir: Path, tokens: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tessera.cli",
        "train",
        str(RECIPE),
        f"run_dir={run_dir}",
        "data.text=null",
        "data.tokenizer=null",
        "data.seq_len=null",
        f"data.shards={tokens}",
        "data.batch_size=8",
        "data.eval_batch_size=64",
        "data.num_workers=2",
        f"model.tokenizer={tokens / 'tokenizer.json'}",
        "model.n_layer=1",
        "model.n_head=2",
        "model.d_model=32",
        "model.max_seq_len=32",
        "model.dropout=0.1",
        "deterministic=true",
        f"max_duration={BATCHES}ba",
        "save_interval=1ba",
        "keep_last=2",
        "eval_interval=8ba",
        "scheduler.t_warmup=4ba",
        "loggers={}",
        "callbacks={}",
    ]


@pytest.mark.slow
def test_sigkill_streaming_char_gpt_with_dropout_resumes_bit_exact(tmp_path):
    text = tmp_path / "shakespeare.txt"
    text.write_bytes(SHAKESPEARE.read_bytes()[:40_000])
    tokens = tmp_path / "tokens"
    args = ["data", "tokenize", str(text), "--out", str(tokens), "--tokenizer", "char"]
    assert main([*args, "--seq-len", "32", "--format", "shards"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the uninterrupted run goes on beside the killed one: the suite runs on one core of two
    reference = subprocess.Popen(
        command(tmp_path / "reference", tokens),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    try:
        rng = random.Random(time.time_ns())
        batch, delay = rng.randrange(2, BATCHES - 2), rng.uniform(0.0, 0.4)
        checkpoints = tmp_path / "killed" / "shakespeare-char" / "checkpoints"
        for _ in range(4):  # a kill that lands after the last batch kills nothing: again, sooner
            shutil.rmtree(tmp_path / "killed", ignore_errors=True)
            # after checkpoint `batch`, a random moment into the next ones
            run = command(tmp_path / "killed", tokens)
            killed_at = kill_after(run, env, checkpoints, batch, delay)
            if killed_at < BATCHES:
                break
            batch, delay = rng.randrange(2, BATCHES // 2), delay / 4
        assert 0 <= killed_at < BATCHES, killed_at
        final = subprocess.run(
            command(tmp_path / "killed", tokens),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert final.returncode == 0, final.stderr[-3000:]
        summary = json.loads(final.stdout.strip().splitlines()[-1])
        assert summary["resumed_from"] is not None and summary["timestamp"]["batch"] == BATCHES
        _, errors = reference.communicate(timeout=300)
    finally:
        if reference.poll() is None:
            reference.kill()
    assert reference.returncode == 0, errors[-3000:]

    expected = load_file(
        tmp_path / "reference" / "shakespeare-char" / "final" / "model.safetensors"
    )
    actual = load_file(tmp_path / "killed" / "shakespeare-char" / "final" / "model.safetensors")
    assert expected.keys() == actual.keys()
    different = [name for name in expected if not (expected[name] == actual[name]).all()]
    assert not different, (
        f"killed after checkpoint {killed_at} (+{delay:.2f} s); differ: {different}"
    )
