"""Tessera's Triton kernels (SwiGLU, the RoPE head split) give PyTorch's results, forward and
backward, on their own and inside a GPT. Run on CPU through Triton's interpreter; the GPU
speed is measured in benchmarks/gpu_kernels.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

HERE = Path(__file__).parent
SRC = HERE.parents[1] / "src"


@pytest.fixture(scope="module")
def errors() -> dict:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, str(HERE / "triton_interpreted.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["swiglu small", "swiglu two column blocks"])
def test_swiglu_kernel_matches_pytorch(errors, case):
    assert errors[case] < 1e-5


@pytest.mark.parametrize("case", ["rope gqa shared positions", "rope per-sequence positions"])
def test_rope_kernel_matches_pytorch_and_writes_contiguous_heads(errors, case):
    assert errors[case] < 1e-5


def test_gpt_with_kernels_trains_like_without(errors):
    difference, uses_rope_kernel, uses_swiglu_kernel = errors["gpt llama-style"]
    assert uses_rope_kernel and uses_swiglu_kernel
    assert difference < 1e-5
    difference, uses_rope_kernel, _ = errors["gpt value embeddings"]
    assert uses_rope_kernel and difference < 1e-5


@pytest.mark.parametrize("case", ["gpt head size 24", "gpt qk-norm"])
def test_rope_kernel_steps_aside_where_it_does_not_apply(errors, case):
    difference, uses_rope_kernel, uses_swiglu_kernel = errors[case]
    assert not uses_rope_kernel and uses_swiglu_kernel
    assert difference < 1e-5
