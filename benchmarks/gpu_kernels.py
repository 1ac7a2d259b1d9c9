"""Tessera's Triton kernels (SwiGLU, the RoPE head split) beside what torch.compile makes of the
same PyTorch code, at the 1.4B shape's sizes (batch 24 x 2048 tokens, d_model 2048, hidden 5632,
16 heads of 128).

For each op, forward and forward+backward: the compiled PyTorch reference and the Triton op in
each tile configuration of `--configs`; median of `--repeats` timed runs (CUDA events) and the
bandwidth it reaches on the bytes it must move. Each result is checked against the eager
float32 reference first (the largest difference is reported). One JSON line per row.

    python benchmarks/gpu_kernels.py --out results/kernels.json
    TRITON_INTERPRET=1 python benchmarks/gpu_kernels.py --smoke     # CPU check of the script
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tessera.models.gpt import rope_kernel, swiglu_kernel
from tessera.models.gpt.layers import apply_rope, rope_tables

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def median_ms(fn, repeats: int) -> float:
    """Median over `repeats` samples of the mean of 10 back-to-back calls (so the host's launch
    time hides behind the GPU's work)."""
    for _ in range(3):
        fn()
    if DEVICE != "cuda":
        return float("nan")
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 10)
    times.sort()
    return times[len(times) // 2]


def compile_on_gpu(fn):
    return torch.compile(fn) if DEVICE == "cuda" else fn


def fresh_compile(op):
    """The op compiled anew: its tile sizes are read when inductor traces it."""
    torch._dynamo.reset()
    return compile_on_gpu(lambda *args: op(*args))


def reference_swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


def reference_heads(qkv, cos, sin, n_head: int, n_kv_head: int):
    batch, length, width = qkv.shape
    head_dim = width // (n_head + 2 * n_kv_head)
    q, k, v = qkv.split([n_head * head_dim, n_kv_head * head_dim, n_kv_head * head_dim], -1)
    q = q.view(batch, length, n_head, head_dim).transpose(1, 2)
    k = k.view(batch, length, n_kv_head, head_dim).transpose(1, 2)
    v = v.view(batch, length, n_kv_head, head_dim).transpose(1, 2)
    return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v


def run_case(name, fn, inputs, grads, bytes_fwd, bytes_bwd, repeats):
    """Time forward and forward+backward of fn(*inputs) with upstream gradients `grads`."""
    leaf = inputs[0]

    def forward():
        return fn(*inputs)

    def forward_backward():
        outs = fn(*inputs)
        outs = outs if isinstance(outs, tuple) else (outs,)
        torch.autograd.backward(outs, grads)
        leaf.grad = None

    fwd = median_ms(forward, repeats)
    both = median_ms(forward_backward, repeats)
    return {
        "op": name,
        "forward_ms": round(fwd, 3),
        "forward_backward_ms": round(both, 3),
        "forward_tb_s": round(bytes_fwd / fwd / 1e9, 2),
        "forward_backward_tb_s": round((bytes_fwd + bytes_bwd) / both / 1e9, 2),
    }


def max_error(fn, reference, inputs, grads) -> float:
    """Largest difference from the eager float32 reference, outputs and input gradient."""
    worst = 0.0
    results = []
    for f, cast in ((fn, None), (reference, torch.float32)):
        leaf = inputs[0].detach().clone().to(cast or inputs[0].dtype).requires_grad_()
        rest = [t.float() if cast and isinstance(t, torch.Tensor) else t for t in inputs[1:]]
        outs = f(leaf, *rest)
        outs = outs if isinstance(outs, tuple) else (outs,)
        torch.autograd.backward(outs, [g.to(o.dtype) for g, o in zip(grads, outs)])
        results.append([o.float() for o in outs] + [leaf.grad.float()])
    for mine, ref in zip(*results):
        worst = max(worst, (mine - ref).abs().max().item())
    return worst


def bench_swiglu(tokens: int, hidden: int, configs: list[tuple[int, int, int]], repeats: int):
    gate_up = torch.randn(tokens, 2 * hidden, device=DEVICE, dtype=torch.bfloat16)
    gate_up.requires_grad_()
    grad = torch.randn(tokens, hidden, device=DEVICE, dtype=torch.bfloat16)
    size = tokens * hidden * 2  # bytes of one [tokens, hidden] bf16 tensor
    fwd_bytes, bwd_bytes = 3 * size, 5 * size  # read g,u write h; read dh,g,u write dg,du
    compiled = compile_on_gpu(reference_swiglu)
    rows = [run_case("swiglu compiled", compiled, [gate_up], [grad], fwd_bytes, bwd_bytes, repeats)]
    rows[0]["max_error"] = max_error(compiled, reference_swiglu, [gate_up], [grad])
    for block_rows, block_cols, warps in configs:
        swiglu_kernel.BLOCK_ROWS, swiglu_kernel.BLOCK_COLS = block_rows, block_cols
        swiglu_kernel.NUM_WARPS = warps
        op = fresh_compile(swiglu_kernel.swiglu)
        row = run_case(
            f"swiglu forward compiled, backward triton {block_rows}x{block_cols} w{warps}",
            op,
            [gate_up],
            [grad],
            fwd_bytes,
            bwd_bytes,
            repeats,
        )
        row["max_error"] = max_error(op, reference_swiglu, [gate_up], [grad])
        rows.append(row)
    return rows


def bench_heads(batch, seq, n_head, head_dim, configs: list[tuple[int, ...]], repeats: int):
    width = 3 * n_head * head_dim
    qkv = torch.randn(batch, seq, width, device=DEVICE, dtype=torch.bfloat16).requires_grad_()
    cos, sin = (t.to(DEVICE)[None, None] for t in rope_tables(head_dim, seq, 10000.0))
    grads = [
        torch.randn(batch, n_head, seq, head_dim, device=DEVICE, dtype=torch.bfloat16)
        for _ in range(3)
    ]
    size = batch * seq * width * 2
    compiled = compile_on_gpu(reference_heads)
    inputs = [qkv, cos, sin, n_head, n_head]
    rows = [run_case("rope+heads compiled", compiled, inputs, grads, 2 * size, 2 * size, repeats)]
    rows[0]["max_error"] = max_error(compiled, reference_heads, inputs, grads)
    for forward_t, forward_w, backward_t, backward_w in configs:
        rope_kernel.FORWARD_TILE, rope_kernel.BACKWARD_TILE = (
            (forward_t, forward_w),
            (backward_t, backward_w),
        )
        op = fresh_compile(rope_kernel.rope_heads)
        row = run_case(
            f"rope+heads triton t{forward_t} w{forward_w} : t{backward_t} w{backward_w}",
            op,
            inputs,
            grads,
            2 * size,
            2 * size,
            repeats,
        )
        row["max_error"] = max_error(op, reference_heads, inputs, grads)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes (CPU check)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--configs", default="4x1024w4,1x2048w8,8x512w4,2x1024w4,8x1024w8")
    parser.add_argument(
        "--rope-configs",
        default="32w4:32w4,32w4:32w8,16w4:32w8,32w4:64w8,64w4:32w8",
        help="forward:backward tiles, each TOKENSwWARPS",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    configs = []
    for text in args.configs.split(","):
        shape, warps = text.split("w")
        block_rows, block_cols = shape.split("x")
        configs.append((int(block_rows), int(block_cols), int(warps)))
    rope_configs = [
        tuple(int(x) for tile in text.split(":") for x in tile.split("w"))
        for text in args.rope_configs.split(",")
    ]
    if args.smoke:
        rows = bench_swiglu(64, 96, configs[:1], 1) + bench_heads(2, 40, 2, 16, rope_configs[:1], 1)
    else:
        rows = bench_swiglu(24 * 2048, 5632, configs, args.repeats)
        rows += bench_heads(24, 2048, 16, 128, rope_configs, args.repeats)
    for row in rows:
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))


if __name__ == "__main__":
    main()
