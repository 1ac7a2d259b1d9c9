"""Plain-text reports of an estimate: what the run does, time and money as a range, memory."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from tessera.estimate.hardware import GIB

if TYPE_CHECKING:
    from tessera.estimate.plan import Estimate


def duration(seconds: float) -> str:
    """'3 d 4 h', '2 h 05 min', '4 min 10 s', '12.3 s'."""
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{seconds:.1f} s"


def money(value: float) -> str:
    """'$0.0046', '$12.30', '$202,225'."""
    if value < 1:
        return f"${value:.4f}"
    return f"${value:,.2f}" if value < 1000 else f"${value:,.0f}"


def format_estimate(estimate: Estimate) -> str:
    w, hw = estimate.workload, estimate.hardware
    lines = [f"{w.recipe}: {w.parameters:,} parameters, {w.total_batches:,} batches"]
    per_batch = f"{w.samples_per_batch:,} samples"
    if w.tokens_per_batch:
        per_batch += f" / {w.tokens_per_batch:,} tokens"
    lines.append(
        f"  per batch: {per_batch}, {w.flops_per_batch:.3g} training FLOPs ({w.flops_source})"
    )
    lines.append(
        f"  total: {w.total_flops:.3g} FLOPs"
        + (f", {w.total_tokens:.3g} tokens" if w.tokens_per_batch else "")
    )
    device = f"{estimate.gpus} x {hw.description}" if estimate.gpus > 1 else hw.description
    lines.append(f"on {device}, {estimate.mode} mode:")
    step = f"  step {estimate.step_seconds * 1000:,.1f} ms"
    if estimate.mfu is not None:
        step += f", MFU {estimate.mfu:.1%}"
    if estimate.bound and estimate.bound != "measured":
        step += f" ({estimate.bound}-bound)"
    if estimate.gpus > 1:
        step += f", scaling efficiency {estimate.scaling:.2f}"
    lines.append(step)
    for part, seconds in estimate.seconds.items():
        if seconds:
            lines.append(f"    {part:<30} {duration(seconds)}")
    wall = estimate.wall_seconds
    lines.append(
        f"  wall time: {duration(wall['expected'])} (range {duration(wall['low'])} - "
        f"{duration(wall['high'])})"
    )
    hours = estimate.gpu_hours
    lines.append(
        f"  GPU hours: {hours['expected']:,.2f} ({hours['low']:,.2f} - {hours['high']:,.2f})"
    )
    dollars = estimate.dollars
    if dollars is not None:
        lines.append(
            f"  cost at {money(estimate.price_per_gpu_hour or 0)}/GPU-hour: "
            f"{money(dollars['expected'])} (range {money(dollars['low'])} - "
            f"{money(dollars['high'])})"
        )
    if estimate.probe is not None:
        p = estimate.probe
        lines.append(
            f"  probe on {p.device}: {p.steps} steps timed, {p.step_seconds * 1000:,.1f} ms each; "
            f"start-up {p.startup_seconds:.1f} s, first step {p.first_step_seconds:.2f} s"
            + (
                f", evaluation {p.first_eval_seconds:.2f} s first, {p.eval_seconds:.2f} s after"
                if p.eval_seconds is not None and p.first_eval_seconds is not None
                else ""
            )
            + (f", checkpoint {p.checkpoint_seconds:.2f} s" if p.checkpoint_seconds else "")
            + (f", peak memory {p.peak_memory_bytes / GIB:.2f} GiB" if p.peak_memory_bytes else "")
        )
    lines.extend(format_memory(estimate))
    notes = [*w.notes, *estimate.notes]
    if notes:
        lines.append("notes:")
        lines.extend(f"  - {note}" for note in notes)
    return "\n".join(lines)


def format_memory(estimate: Estimate) -> list[str]:
    plan = estimate.memory
    where = "per GPU" if estimate.hardware.name != "cpu" else "in RAM"
    verdict = "fits" if plan.fits else "DOES NOT FIT"
    lines = [
        f"memory {where} ({plan.strategy}, microbatch {plan.microbatch}): "
        f"{plan.total / GIB:.2f} GiB of {plan.capacity / GIB:.0f} GiB, {verdict}"
    ]
    lines.extend(f"    {part:<30} {value / GIB:8.2f} GiB" for part, value in plan.parts.items())
    lines.extend(f"  to fit: {advice}" for advice in plan.advice)
    return lines


def timestamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
