"""2:4 semi-structured sparsity speed on a GPU: dense vs sparse matmuls and an MLP block.

    python benchmarks/sparsity_2to4.py --output sparsity.json

Weights are pruned to the 2:4 pattern with Tessera's `semi_structured_mask`, converted with
`torch.sparse.to_sparse_semi_structured`, and timed against the same (pruned) dense weights
with CUDA events (median of many repeats after warm-up). Correctness: the sparse result is
compared with the dense result of the same pruned weights.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tessera.algorithms.semi_structured_sparsity import (  # noqa: E402
    apply_semi_structured_pruning,
    semi_structured_mask,
    to_semi_structured,
)

# (tokens, in_features, out_features): transformer-style linear layers.
SHAPES = [(4096, 4096, 4096), (8192, 4096, 16384), (8192, 16384, 4096), (1024, 4096, 4096)]


def median_ms(fn, repeats: int = 50, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def bench_linear(tokens: int, k: int, n: int, dtype: torch.dtype) -> dict:
    from torch.sparse import to_sparse_semi_structured

    weight = torch.randn(n, k, device="cuda", dtype=dtype)
    weight = weight * semi_structured_mask(weight)
    sparse = to_sparse_semi_structured(weight)
    inputs = [torch.randn(tokens, k, device="cuda", dtype=dtype) for _ in range(4)]
    dense_out = F.linear(inputs[0], weight)
    sparse_out = F.linear(inputs[0], sparse)
    error = ((sparse_out.float() - dense_out.float()).norm() / dense_out.float().norm()).item()
    state = {"i": 0}

    def dense_call():
        state["i"] = (state["i"] + 1) % 4
        return F.linear(inputs[state["i"]], weight)

    def sparse_call():
        state["i"] = (state["i"] + 1) % 4
        return F.linear(inputs[state["i"]], sparse)

    dense_ms, sparse_ms = median_ms(dense_call), median_ms(sparse_call)
    flops = 2 * tokens * k * n
    return {
        "shape": f"{tokens}x{k} @ {k}x{n}",
        "dtype": str(dtype).replace("torch.", ""),
        "dense_ms": round(dense_ms, 4),
        "sparse_ms": round(sparse_ms, 4),
        "speedup": round(dense_ms / sparse_ms, 3),
        "dense_tflops": round(flops / dense_ms / 1e9, 1),
        "relative_error": error,
    }


def bench_mlp(dtype: torch.dtype, d_model: int = 4096, tokens: int = 8192) -> dict:
    torch.manual_seed(0)
    model = (
        nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
        .to("cuda", dtype)
        .eval()
    )
    apply_semi_structured_pruning(model)
    inputs = torch.randn(tokens, d_model, device="cuda", dtype=dtype)
    with torch.inference_mode():
        reference = model(inputs)
        dense_ms = median_ms(lambda: model(inputs))
        converted = to_semi_structured(model)
        out = model(inputs)
        sparse_ms = median_ms(lambda: model(inputs))
    error = ((out.float() - reference.float()).norm() / reference.float().norm()).item()
    return {
        "shape": f"MLP {d_model}->{4 * d_model}->{d_model}, {tokens} tokens",
        "dtype": str(dtype).replace("torch.", ""),
        "layers_converted": converted,
        "dense_ms": round(dense_ms, 4),
        "sparse_ms": round(sparse_ms, 4),
        "speedup": round(dense_ms / sparse_ms, 3),
        "relative_error": error,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="sparsity_2to4.json")
    args = parser.parse_args()
    rows = []
    for dtype in (torch.float16, torch.bfloat16):
        for tokens, k, n in SHAPES:
            rows.append(bench_linear(tokens, k, n, dtype))
        rows.append(bench_mlp(dtype))
    payload = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "capability": list(torch.cuda.get_device_capability(0)),
        "rows": rows,
    }
    Path(args.output).write_text(json.dumps(payload, indent=1))
    print(f"{payload['device']} torch {payload['torch']}")
    print("| shape | dtype | dense ms | 2:4 sparse ms | speed-up | rel. error |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['shape']} | {r['dtype']} | {r['dense_ms']} | {r['sparse_ms']} | "
            f"{r['speedup']}x | {r['relative_error']:.1e} |"
        )


if __name__ == "__main__":
    main()
