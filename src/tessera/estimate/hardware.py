"""The hardware table: peak dense FLOP/s per math mode, memory and memory bandwidth per device.

GPU compute peaks are the MFU monitor's own table (`tessera.callbacks.peak_flops`, vendors'
dense datasheet figures, no 2:4 sparsity); this module adds fp8, memory and bandwidth and the
names a user types (`--gpu h100`). "cpu" is this machine, measured by a short matrix-product
probe, since CPU datasheets do not say what PyTorch reaches.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from tessera.callbacks.peak_flops import PEAK_FLOPS
from tessera.core.errors import UserError, did_you_mean

GIB = 2**30


@dataclass(frozen=True)
class Hardware:
    """One device: `peak[mode]` in FLOP/s (modes bf16, fp16, fp8, tf32, fp32), memory in bytes,
    bandwidth in bytes/s. `measured` says the numbers come from a probe, not a datasheet."""

    name: str
    description: str
    peak: dict[str, float]
    memory_bytes: float
    bandwidth: float
    measured: bool = False
    notes: list[str] = field(default_factory=list)

    def peak_for(self, mode: str) -> float:
        """The peak of a math mode, falling back to the nearest slower one the device has."""
        for candidate in {"fp8": ("fp8", "bf16"), "tf32": ("tf32", "fp32")}.get(mode, (mode,)):
            if candidate in self.peak:
                return self.peak[candidate]
        if "fp32" in self.peak:
            return self.peak["fp32"]
        raise UserError(f"{self.name}: no peak FLOP/s known for {mode}")


# name -> (compute key in PEAK_FLOPS, dense fp8 FLOP/s or None, memory GB, bandwidth GB/s, text)
_DATASHEETS: dict[str, tuple[str, float | None, float, float, str]] = {
    "h100-sxm": ("h100-sxm", 1979e12, 80, 3350, "NVIDIA H100 SXM 80GB HBM3"),
    "h100-pcie": ("h100-pcie", 1513e12, 80, 2000, "NVIDIA H100 PCIe 80GB"),
    "h200": ("h200-sxm", 1979e12, 141, 4800, "NVIDIA H200 SXM 141GB HBM3e"),
    "a100-40gb": ("a100", None, 40, 1555, "NVIDIA A100 SXM 40GB"),
    "a100-80gb": ("a100", None, 80, 2039, "NVIDIA A100 SXM 80GB"),
    "l40s": ("l40s", 733e12, 48, 864, "NVIDIA L40S 48GB"),
    "l4": ("l4", 242.5e12, 24, 300, "NVIDIA L4 24GB"),
}
ALIASES = {"h100": "h100-sxm", "h200-sxm": "h200", "a100": "a100-80gb", "a100-40": "a100-40gb"}


def _datasheet(name: str) -> Hardware:
    key, fp8, memory_gb, bandwidth_gb, text = _DATASHEETS[name]
    peak = dict(PEAK_FLOPS[key])
    if fp8 is not None:
        peak["fp8"] = fp8
    return Hardware(name, text, peak, memory_gb * 1e9, bandwidth_gb * 1e9)


def hardware_names() -> list[str]:
    return [*_DATASHEETS, "cpu"]


def get_hardware(name: str) -> Hardware:
    """The device called `name` (case-insensitive, aliases accepted); 'cpu' probes this machine."""
    key = ALIASES.get(name.lower(), name.lower())
    if key == "cpu":
        return this_cpu()
    if key not in _DATASHEETS:
        raise UserError(
            f"--gpu: unknown device {name!r}; {did_you_mean(key, [*_DATASHEETS, *ALIASES, 'cpu'])}"
            f" Known: {', '.join(hardware_names())}."
        )
    return _datasheet(key)


_CPU_CACHE: list[Hardware] = []


def this_cpu(size: int = 512, seconds: float = 0.3) -> Hardware:
    """This machine's CPU: fp32 and bf16 matrix-product FLOP/s measured for ~`seconds` each,
    memory from the OS, copy bandwidth from a 64 MB clone. Measured once per process."""
    if _CPU_CACHE:
        return _CPU_CACHE[0]
    import torch

    peak = {
        "fp32": _matmul_rate(torch.float32, size, seconds),
        "bf16": _matmul_rate(torch.bfloat16, size, seconds),
    }
    peak["fp16"] = peak["bf16"]
    buffer = torch.empty(16 * 2**20, dtype=torch.float32)
    start = time.perf_counter()
    for _ in range(3):
        buffer.clone()
    bandwidth = 3 * 2 * buffer.nbytes / (time.perf_counter() - start)  # read + write
    memory = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    cpu = Hardware(
        "cpu",
        f"this CPU ({torch.get_num_threads()} threads, measured)",
        peak,
        memory,
        bandwidth,
        measured=True,
        notes=[f"matmul probe {size}x{size}: fp32 {peak['fp32'] / 1e9:.1f} GFLOP/s"],
    )
    _CPU_CACHE.append(cpu)
    return cpu


def _matmul_rate(dtype: object, size: int, seconds: float) -> float:
    import torch

    a = torch.randn(size, size).to(dtype)  # type: ignore[call-overload]
    b = torch.randn(size, size).to(dtype)  # type: ignore[call-overload]
    a @ b  # warm-up: first call allocates and picks kernels
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls < 2:
        a @ b
        calls += 1
    return 2.0 * size**3 * calls / (time.perf_counter() - start)


def local_hardware() -> Hardware:
    """The device a run here would use: the first CUDA GPU if it is in the table, else the CPU."""
    import torch

    from tessera.callbacks.peak_flops import gpu_key

    if not torch.cuda.is_available():
        return this_cpu()
    name = torch.cuda.get_device_name(0)
    key = gpu_key(name)
    if key == "a100":
        memory = torch.cuda.get_device_properties(0).total_memory
        key = "a100-40gb" if memory < 60e9 else "a100-80gb"
    key = ALIASES.get(key or "", key)
    if key not in _DATASHEETS:
        raise UserError(
            f"this machine's GPU ({name}) is not in the hardware table; the probe's step time "
            f"is still measured, but its peak is unknown. Known: {', '.join(hardware_names())}."
        )
    return _datasheet(key)
