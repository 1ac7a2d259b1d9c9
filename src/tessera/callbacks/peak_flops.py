"""Peak dense FLOP/s of known accelerators, the denominator of model FLOPs utilization (MFU).

Numbers are the vendors' datasheet figures for dense math (no 2:4 sparsity), per GPU. Under
fp32 the tensor-core TF32 peak applies only when PyTorch is allowed to use TF32 for matmuls;
otherwise the plain fp32 peak does.
"""

from __future__ import annotations

import torch

from tessera.core.precision import Precision

# name -> math mode -> FLOP/s. Keys of the math-mode dicts: "bf16", "fp16", "tf32", "fp32".
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "h100-sxm": {"bf16": 989e12, "fp16": 989e12, "tf32": 494.5e12, "fp32": 66.9e12},
    "h100-pcie": {"bf16": 756e12, "fp16": 756e12, "tf32": 378e12, "fp32": 51.2e12},
    "h100-nvl": {"bf16": 835e12, "fp16": 835e12, "tf32": 417.5e12, "fp32": 60e12},
    "h200-sxm": {"bf16": 989e12, "fp16": 989e12, "tf32": 494.5e12, "fp32": 66.9e12},
    "a100": {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
    "l40s": {"bf16": 362e12, "fp16": 362e12, "tf32": 183e12, "fp32": 91.6e12},
    "l4": {"bf16": 121e12, "fp16": 121e12, "tf32": 60e12, "fp32": 30.3e12},
    "v100": {"fp16": 125e12, "fp32": 15.7e12},
}


def gpu_key(device_name: str) -> str | None:
    """The table key for a CUDA device name such as 'NVIDIA H100 80GB HBM3', or None."""
    name = device_name.lower()
    if "h100" in name:
        if "pcie" in name:
            return "h100-pcie"
        return "h100-nvl" if "nvl" in name else "h100-sxm"
    if "h200" in name:
        return "h100-nvl" if "nvl" in name else "h200-sxm"
    if "a100" in name:
        return "a100"
    if "l40s" in name:
        return "l40s"
    if "l4" in name.split() or name.endswith(" l4"):
        return "l4"
    if "v100" in name:
        return "v100"
    return None


def math_mode(precision: Precision) -> str:
    """Which peak applies: the autocast dtype, or tf32/fp32 for fp32 runs."""
    if precision == Precision.AMP_BF16:
        return "bf16"
    if precision == Precision.AMP_FP16:
        return "fp16"
    tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != (
        "highest"
    )
    return "tf32" if tf32 else "fp32"


def peak_flops_per_second(device: torch.device, precision: Precision) -> float | None:
    """The device's dense peak for this precision, or None when it is not a known GPU."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    key = gpu_key(torch.cuda.get_device_name(device))
    if key is None:
        return None
    return PEAK_FLOPS[key].get(math_mode(precision))
