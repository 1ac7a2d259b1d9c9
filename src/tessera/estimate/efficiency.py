"""How fast a step runs on a device: the expected MFU, the per-step launch floor, scaling across
GPUs and nodes, and the measured overheads (start-up, compile, checkpoint writes).

Every number here is either fitted to Tessera's own measurements (benchmarks/results/*.md,
named beside each anchor) or a stated assumption; docs/estimate.md derives each one.

A training step takes the longer of two times:

    compute = FLOPs per GPU / (peak FLOP/s x MFU(parameters))
    floor   = parameter tensors x seconds per tensor            (kernel launches, eager PyTorch)

Small models on big GPUs sit on the floor (the char GPT and the Fashion-MNIST ResNet on an H100
are both within 10% of it); large models are compute-bound.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

# Measured MFU of compiled bf16 GPT training on one H100 SXM (benchmarks/results/llm.md §1,
# torch.compile per block, fused AdamW, sequence 2048): (parameters, MFU).
TRANSFORMER_ANCHORS = [(125e6, 0.338), (356e6, 0.415), (1.44e9, 0.519)]
# Convolutional and other models: no compute-bound measurement yet (our ResNets sit on the
# launch floor); an assumption below the transformer anchors.
OTHER_MFU = 0.30
# Without torch.compile the compute part runs at this fraction (assumption; the only eager vs
# compiled pair we measured, the 10.7M char GPT, is floor-bound: 15 ms vs 11 ms per step).
EAGER_FACTOR = 0.80

# Seconds per parameter tensor per training step, eager, on an H100-class GPU. Fitted to three
# floor-bound runs on one H100: char GPT 10.7M (76 tensors, 15 ms: 0.197 ms), Fashion-MNIST
# ResNet width 32 (29 tensors, 6.4 ms: 0.22 ms), ResNet width 64 2-2-2 (47 tensors, 8.65 ms:
# 0.184 ms) (llm.md §2, time_to_accuracy.md GPU table, scaling.md).
GPU_SECONDS_PER_TENSOR = 0.20e-3
CPU_SECONDS_PER_TENSOR = 0.02e-3  # assumption: no device launch, only the Python dispatch
COMPILED_FLOOR_FACTOR = 11 / 15  # char GPT on the H100: whole-model compile 11 ms vs eager 15 ms
# FSDP on one GPU: the 85.9M GPT ran at 54 ms a step where the DDP floor predicts 29 ms
# (scaling.md, 147 tensors, 8 x 1024 tokens): gathers and reshards per block.
FSDP_FLOOR_FACTOR = 54 / 29
FSDP_COMPUTE_FACTOR = 0.90  # assumption: communication not fully hidden behind compute
# On CPUs the MFU is relative to the measured matrix-product rate (assumption, not fitted).
CPU_MFU = 0.50

# Range around the expected step time, as factors (table mode / probe mode).
TABLE_RANGE = (0.70, 1.45)
PROBE_RANGE = (0.90, 1.15)

# Overheads, in seconds (measured on the H100 machine, llm.md §2 and scaling.md).
STARTUP_SECONDS = 13.0  # process start to first step, eager: 12-14 s (5 s of it torchmetrics)
COMPILE_SECONDS = 20.0  # whole-model compile of the char GPT ~20 s; per block ~11 s
CHECKPOINT_BYTES_PER_SECOND = 350e6  # 1,032 MB in 2.89 s (FSDP, DCP); 22 MB in 0.05 s (DDP)


@dataclass(frozen=True)
class StepModel:
    """What the step time is made of, for the report."""

    mfu: float
    compute_seconds: float
    floor_seconds: float

    @property
    def seconds(self) -> float:
        return max(self.compute_seconds, self.floor_seconds)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_seconds >= self.floor_seconds else "launch overhead"


def expected_mfu(
    parameters: float, language_model: bool, compiled: bool, strategy: str, cpu: bool
) -> float:
    """The MFU a compute-bound step is expected to reach (see the anchors above)."""
    if cpu:
        return CPU_MFU
    mfu = _interpolate(TRANSFORMER_ANCHORS, parameters) if language_model else OTHER_MFU
    if not compiled:
        mfu *= EAGER_FACTOR
    if strategy == "fsdp":
        mfu *= FSDP_COMPUTE_FACTOR
    return mfu


def step_model(
    flops_per_gpu: float,
    peak: float,
    parameters: float,
    parameter_tensors: int,
    language_model: bool,
    compiled: bool,
    strategy: str,
    cpu: bool,
) -> StepModel:
    """Expected seconds for one optimizer step on one GPU doing `flops_per_gpu`."""
    mfu = expected_mfu(parameters, language_model, compiled, strategy, cpu)
    per_tensor = CPU_SECONDS_PER_TENSOR if cpu else GPU_SECONDS_PER_TENSOR
    floor = parameter_tensors * per_tensor
    if compiled:
        floor *= COMPILED_FLOOR_FACTOR
    if strategy == "fsdp" and not cpu:
        floor *= FSDP_FLOOR_FACTOR
    return StepModel(mfu, flops_per_gpu / (peak * mfu), floor)


def scaling_efficiency(gpus: int, gpus_per_node: int = 8) -> float:
    """Fraction of linear speed-up kept on `gpus` GPUs (an assumption, not yet measured):
    1.0 on one GPU, 0.95 inside one node (NVLink), then 2% less per doubling of nodes."""
    if gpus <= 1:
        return 1.0
    nodes = math.ceil(gpus / gpus_per_node)
    return 0.95 * 0.98 ** math.log2(nodes) if nodes > 1 else 0.95


def _interpolate(anchors: list[tuple[float, float]], x: float) -> float:
    """Piecewise-linear in log10(x) between anchors, held constant beyond the ends."""
    if x <= anchors[0][0]:
        return anchors[0][1]
    if x >= anchors[-1][0]:
        return anchors[-1][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(anchors):
        if x0 <= x <= x1:
            t = (math.log10(x) - math.log10(x0)) / (math.log10(x1) - math.log10(x0))
            return y0 + t * (y1 - y0)
    raise AssertionError("unreachable")
