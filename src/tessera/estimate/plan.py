"""The estimate of a run: wall time, GPU hours and dollars as low / expected / high, and the memory
plan, from the tables (`table` mode) or from steps measured here (`probe` mode).

    wall = start-up + compile + steps x step seconds + evaluations + checkpoint writes
    step = max(compute, floor) / scaling efficiency        (efficiency.py; probe: measured)
    cost = wall hours x GPUs x price per GPU hour
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tessera.core.errors import UserError
from tessera.estimate import efficiency
from tessera.estimate.hardware import Hardware
from tessera.estimate.memory import MemoryPlan, advise

if TYPE_CHECKING:
    from tessera.config.schema import RunConfig
    from tessera.estimate.probe import ProbeResult
    from tessera.estimate.workload import Workload


@dataclass
class Estimate:
    workload: Workload
    hardware: Hardware
    gpus: int
    mode: str
    step_seconds: float
    seconds: dict[str, float]
    range_factors: tuple[float, float]
    memory: MemoryPlan
    price_per_gpu_hour: float | None = None
    mfu: float | None = None
    bound: str | None = None
    scaling: float = 1.0
    probe: ProbeResult | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def wall_seconds(self) -> dict[str, float]:
        expected = sum(self.seconds.values())
        low, high = self.range_factors
        return {"low": expected * low, "expected": expected, "high": expected * high}

    @property
    def gpu_hours(self) -> dict[str, float]:
        return {k: v * self.gpus / 3600 for k, v in self.wall_seconds.items()}

    @property
    def dollars(self) -> dict[str, float] | None:
        if self.price_per_gpu_hour is None:
            return None
        return {k: v * self.price_per_gpu_hour for k, v in self.gpu_hours.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "hardware": self.hardware.name,
            "hardware_description": self.hardware.description,
            "gpus": self.gpus,
            "price_per_gpu_hour": self.price_per_gpu_hour,
            "step_seconds": self.step_seconds,
            "mfu": self.mfu,
            "bound": self.bound,
            "scaling_efficiency": self.scaling,
            "seconds": self.seconds,
            "wall_seconds": self.wall_seconds,
            "gpu_hours": self.gpu_hours,
            "dollars": self.dollars,
            "memory": self.memory.to_dict(),
            "workload": self.workload.to_dict(),
            "probe": self.probe.to_dict() if self.probe is not None else None,
            "notes": [*self.workload.notes, *self.notes],
        }


def check_price(price: float | None, where: str = "--price") -> float | None:
    if price is None:
        return None
    if isinstance(price, bool) or not isinstance(price, (int, float)) or price < 0:
        raise UserError(
            f"{where}: {price!r} is not a price; give dollars per GPU hour as a number >= 0 "
            "(e.g. 2.50)"
        )
    return float(price)


def check_gpus(gpus: int) -> int:
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise UserError(f"--gpus: {gpus!r} must be a whole number of GPUs, 1 or more")
    return gpus


def estimate_from_table(
    config: RunConfig,
    workload: Workload,
    hardware: Hardware,
    gpus: int = 1,
    price: float | None = None,
) -> Estimate:
    """Table mode: the step time from the expected MFU and the launch floor."""
    gpus, price = check_gpus(gpus), check_price(price)
    cpu = hardware.name == "cpu"
    if cpu and gpus > 1:
        raise UserError("--gpus: the CPU is one device; leave --gpus out with --gpu cpu")
    peak = hardware.peak_for(_math_mode(workload.precision, cpu))
    model = efficiency.step_model(
        workload.flops_per_batch / gpus,
        peak,
        workload.parameters,
        workload.parameter_tensors,
        workload.language_model,
        workload.compiled,
        workload.strategy,
        cpu,
    )
    scaling = efficiency.scaling_efficiency(gpus)
    step = model.seconds / scaling
    eval_seconds = _eval_seconds(config, workload, model, peak * model.mfu, gpus)
    seconds = {
        "start-up": efficiency.STARTUP_SECONDS,
        "compile": efficiency.COMPILE_SECONDS if workload.compiled else 0.0,
        "training steps": workload.total_batches * step,
        "evaluation": eval_seconds,
        "checkpoints": _checkpoint_seconds(workload, gpus),
    }
    memory, _ = advise(config, workload, hardware, gpus)
    notes = []
    if model.bound != "compute":
        notes.append(
            "the step is bound by kernel-launch overhead, not FLOPs (a small model for this "
            "device): table mode is least certain here; --probe measures it"
        )
    return Estimate(
        workload,
        hardware,
        gpus,
        "table",
        step,
        seconds,
        efficiency.TABLE_RANGE,
        memory,
        price,
        mfu=model.mfu,
        bound=model.bound,
        scaling=scaling,
        notes=notes,
    )


def estimate_from_probe(
    config: RunConfig,
    workload: Workload,
    hardware: Hardware,
    probe: ProbeResult,
    gpus: int = 1,
    price: float | None = None,
) -> Estimate:
    """Probe mode: the measured step time (first step excluded) and measured overheads; more
    GPUs divide the step by the GPUs and the scaling efficiency (the probe ran on one)."""
    gpus, price = check_gpus(gpus), check_price(price)
    scaling = efficiency.scaling_efficiency(gpus)
    step = probe.step_seconds / gpus / scaling
    eval_each = probe.eval_seconds if probe.eval_seconds is not None else 0.0
    eval_first = probe.first_eval_seconds if probe.first_eval_seconds is not None else eval_each
    evaluations = workload.evaluations
    checkpoint_each = probe.checkpoint_seconds or 0.0
    seconds = {
        "start-up": probe.startup_seconds,
        "first step (compile, warm-up)": max(0.0, probe.first_step_seconds - probe.step_seconds),
        "training steps": workload.total_batches * step,
        "evaluation": (eval_first + (evaluations - 1) * eval_each) / gpus if evaluations else 0.0,
        "checkpoints": workload.checkpoints * checkpoint_each,
    }
    memory, _ = advise(config, workload, hardware, gpus)
    flops_per_second = workload.flops_per_batch / probe.step_seconds
    peak = hardware.peak_for(_math_mode(workload.precision, hardware.name == "cpu"))
    notes = []
    if gpus > 1:
        notes.append(
            f"the probe ran on one device; {gpus} GPUs are assumed to split the batch with "
            f"scaling efficiency {scaling:.2f}"
        )
    return Estimate(
        workload,
        hardware,
        gpus,
        "probe",
        step,
        seconds,
        efficiency.PROBE_RANGE,
        memory,
        price,
        mfu=flops_per_second / peak,
        bound="measured",
        scaling=scaling,
        probe=probe,
        notes=notes,
    )


def _math_mode(precision: str, cpu: bool) -> str:
    if precision == "amp_bf16":
        return "bf16"
    if precision == "amp_fp16":
        return "fp16"
    return "fp32"


def _eval_seconds(
    config: RunConfig, workload: Workload, model: efficiency.StepModel, rate: float, gpus: int
) -> float:
    """Forward passes only: a third of the training FLOPs per sample, and a third of the floor
    per evaluation batch."""
    if not workload.evaluations or not workload.eval_samples:
        return 0.0
    batch = int(getattr(config.data, "eval_batch_size", None) or workload.samples_per_batch)
    batches = -(-workload.eval_samples // (batch * gpus))
    compute = workload.eval_samples * workload.flops_per_sample / 3 / gpus / rate
    per_evaluation = max(compute, batches * model.floor_seconds / 3)
    return workload.evaluations * per_evaluation


def _checkpoint_seconds(workload: Workload, gpus: int) -> float:
    """Each checkpoint holds weights and optimizer state; the final export, weights only. Under
    FSDP every rank writes its own shard at the same time (storage assumed to keep up)."""
    per_checkpoint = workload.parameters * (4 + workload.optimizer_state_bytes)
    if workload.strategy == "fsdp":
        per_checkpoint /= gpus
    written = workload.checkpoints * per_checkpoint + workload.parameters * 4
    return written / efficiency.CHECKPOINT_BYTES_PER_SECOND
