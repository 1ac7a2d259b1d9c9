"""Where a training step's GPU time goes: CUDA kernel time by kind, from torch.profiler.

Kinds are read from kernel names: matrix products (cuBLAS/CUTLASS/nvjet), attention (flash,
cuDNN, memory-efficient), the optimizer (fused/foreach AdamW), Triton kernels that
`torch.compile` generated (norms, rotary, activations, casts fused), other ATen element-wise
and copy kernels, and the rest. The step's wall time minus its kernel time is time the GPU
waited on the host.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

KINDS = (  # checked in order: cuDNN's attention kernels also carry "sm90_"
    ("attention", ("flash", "fmha", "sdpa", "attn", "efficient")),
    ("matmul", ("gemm", "xmma", "cutlass", "nvjet", "cublas", "sm90_", "sm100_")),
    ("optimizer", ("adam", "multi_tensor", "foreach")),
    ("triton (compiled)", ("triton",)),
    ("element-wise / copy", ("elementwise", "copy", "cast", "memcpy", "memset", "fill", "reduce")),
)


def kind_of(name: str) -> str:
    lowered = name.lower()
    for kind, marks in KINDS:
        if any(mark in lowered for mark in marks):
            return kind
    return "other"


def kernel_breakdown(step: Callable[[], None], steps: int = 3, top: int = 12) -> dict[str, Any]:
    """Profile `steps` calls of `step` (already warm); kernel ms per step by kind and the top
    kernels by time."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        wall = (time.perf_counter() - start) / steps
    by_kind: dict[str, float] = {}
    kernels: list[tuple[float, str]] = []
    for event in prof.key_averages():
        device_us = getattr(event, "self_device_time_total", None)
        if device_us is None:
            device_us = getattr(event, "self_cuda_time_total", 0)
        if device_us <= 0 or event.key.startswith(("ProfilerStep", "Optimizer.", "##")):
            continue  # annotations on the GPU's timeline, not kernels: counted twice otherwise
        if getattr(event, "device_type", None) is not None and "CUDA" not in str(event.device_type):
            continue
        ms = device_us / 1000 / steps
        by_kind[kind_of(event.key)] = by_kind.get(kind_of(event.key), 0.0) + ms
        kernels.append((ms, event.key))
    kernel_ms = sum(by_kind.values())
    kernels.sort(reverse=True)
    return {
        "step_ms": round(wall * 1000, 1),
        "kernel_ms": round(kernel_ms, 1),
        "gpu_idle_ms": round(wall * 1000 - kernel_ms, 1),
        "by_kind_ms": {k: round(v, 1) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "top_kernels": [{"ms": round(ms, 2), "name": name[:140]} for ms, name in kernels[:top]],
    }


def breakdown_table(title: str, result: dict[str, Any]) -> str:
    lines = [
        f"### Profile: {title}",
        "",
        f"step {result['step_ms']} ms wall, {result['kernel_ms']} ms in kernels, "
        f"{result['gpu_idle_ms']} ms the GPU waited",
        "",
        "| kind | ms per step | share of kernel time |",
        "| --- | ---: | ---: |",
    ]
    total = result["kernel_ms"] or 1.0
    for kind, ms in result["by_kind_ms"].items():
        lines.append(f"| {kind} | {ms} | {100 * ms / total:.1f}% |")
    lines += ["", "| top kernels | ms per step |", "| --- | ---: |"]
    lines += [f"| `{k['name']}` | {k['ms']} |" for k in result["top_kernels"]]
    return "\n".join(lines) + "\n"
