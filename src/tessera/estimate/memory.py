"""The memory plan: what one GPU holds during a step under DDP or FSDP, whether it fits, and which
setting to change when it does not.

    weights      parameters x 4 B (fp32 master weights; mixed precision keeps them)
    gradients    trainable parameters x 4 B (all of them, unless e.g. LoRA freezes most)
    optimizer    trainable parameters x 8 B (Adam/AdamW: two moments), x 4 B (SGD with
                 momentum), else 0
    FSDP         the three above divided by the GPUs, plus two gathered blocks (the one running
                 and the one prefetched) in the compute dtype
    activations  saved-for-backward bytes of one sample (measured, see workload.py) x microbatch
    transient    the largest saved tensor x microbatch (its gradient exists during backward)
    overhead     1 GiB on a GPU (CUDA context, allocator slack, kernel workspaces)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tessera.core.errors import ConfigError
from tessera.estimate.hardware import GIB, Hardware

if TYPE_CHECKING:
    from tessera.config.schema import RunConfig
    from tessera.estimate.workload import Workload

GPU_OVERHEAD_BYTES = 1.0 * GIB


@dataclass
class MemoryPlan:
    strategy: str
    gpus: int
    microbatch: int
    capacity: float
    parts: dict[str, float]
    advice: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool:
        return self.total <= self.capacity

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "gpus": self.gpus,
            "microbatch": self.microbatch,
            "capacity_bytes": self.capacity,
            "parts_bytes": self.parts,
            "total_bytes": self.total,
            "fits": self.fits,
            "advice": self.advice,
        }


def memory_plan(
    workload: Workload,
    hardware: Hardware,
    gpus: int,
    strategy: str | None = None,
    microbatch: int | None = None,
) -> MemoryPlan:
    """Bytes per GPU for `workload` on `gpus` devices (strategy defaults to the recipe's)."""
    strategy = strategy or workload.strategy
    per_gpu_batch = max(1, workload.samples_per_batch // gpus)
    microbatch = min(microbatch or workload.microbatch_size or per_gpu_batch, per_gpu_batch)
    params, trained = workload.parameters, workload.trainable_parameters
    shard = gpus if strategy == "fsdp" and gpus > 1 else 1
    parts = {
        "weights": params * 4 / shard,
        "gradients": trained * 4 / shard,
        "optimizer": trained * workload.optimizer_state_bytes / shard,
    }
    if shard > 1:
        compute_bytes = 4 if workload.precision == "fp32" else 2
        parts["gathered blocks"] = 2 * params / max(1, workload.blocks) * compute_bytes
    parts["activations"] = workload.activation_bytes_per_sample * microbatch
    parts["transient"] = workload.largest_activation_per_sample * microbatch
    if hardware.name != "cpu":
        parts["overhead"] = GPU_OVERHEAD_BYTES
    return MemoryPlan(strategy, gpus, microbatch, hardware.memory_bytes, parts)


def advise(
    config: RunConfig, workload: Workload, hardware: Hardware, gpus: int
) -> tuple[MemoryPlan, list[MemoryPlan]]:
    """The plan for the recipe as written, with advice when it does not fit: each change tried
    (smaller microbatch, FSDP, activation checkpointing, bf16, FSDP with checkpointing) and the
    largest microbatch at which it fits. Also returns the alternative plans."""
    from tessera.estimate.workload import read_workload

    plan = memory_plan(workload, hardware, gpus)
    if plan.fits:
        return plan, []
    fitting = largest_fitting_microbatch(plan, workload)
    if fitting:
        plan.advice.append(
            f"device_train_microbatch_size: {fitting} (from {plan.microbatch}) fits; gradient "
            "accumulation keeps the batch and the result the same"
        )
    checkpointed = None
    if not config.activation_checkpointing:
        with contextlib.suppress(ConfigError):  # a model without repeated blocks cannot
            checkpointed = read_workload(
                config.model_copy(update={"activation_checkpointing": True}), "alternative"
            )
    mixed = None
    if config.precision == "fp32":
        mixed = read_workload(config.model_copy(update={"precision": "amp_bf16"}), "alternative")
    tries: list[tuple[str, Workload, str | None]] = []
    if plan.strategy != "fsdp" and gpus > 1:
        tries.append(
            ("parallelism.strategy: fsdp (shards weights, gradients, optimizer)", workload, "fsdp")
        )
    if checkpointed is not None:
        tries.append(("activation_checkpointing: true (~30% more compute)", checkpointed, None))
    if mixed is not None:
        tries.append(("precision: amp_bf16", mixed, None))
    if checkpointed is not None and plan.strategy != "fsdp" and gpus > 1:
        tries.append(("fsdp and activation checkpointing together", checkpointed, "fsdp"))
    alternatives = []
    for label, alternative, strategy in tries:
        other = memory_plan(alternative, hardware, gpus, strategy=strategy)
        alternatives.append(other)
        if other.fits:
            verdict = f"{_gib(other.total)} per GPU, fits"
        else:
            at = largest_fitting_microbatch(other, alternative)
            verdict = (
                f"{_gib(other.total)} per GPU; fits with device_train_microbatch_size {at}"
                if at
                else f"{_gib(other.total)} per GPU, does not fit even at microbatch 1"
            )
        plan.advice.append(f"{label}: {verdict}")
    if not any("fits" in line and "not fit" not in line for line in plan.advice):
        plan.advice.append(
            "nothing tried fits: use more GPUs with FSDP, a device with more memory, or a "
            "smaller model"
        )
    return plan, alternatives


def largest_fitting_microbatch(plan: MemoryPlan, workload: Workload) -> int:
    """The largest microbatch (up to the plan's) that fits, or 0 if not even one sample does."""
    fixed = plan.total - plan.parts["activations"] - plan.parts["transient"]
    per_sample = workload.activation_bytes_per_sample + workload.largest_activation_per_sample
    if per_sample <= 0:
        return plan.microbatch if fixed <= plan.capacity else 0
    return max(0, min(plan.microbatch, int((plan.capacity - fixed) // per_sample)))


def _gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"
