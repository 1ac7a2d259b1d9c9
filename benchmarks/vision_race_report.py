"""The report of benchmarks/vision_race.py: tables of time to the target per device, the
speed-ups on three clocks (training, training + evaluation, from process launch) with their
range over repeats, lower bounds where the baseline did not reach the target."""

from __future__ import annotations

import statistics
from typing import Any

CLOCKS = {
    "training": "training s",
    "with_eval": "training + evaluation s",
    "launch": "s from process launch",
}


def _first(curve: list[dict[str, float]], target: float) -> dict[str, float] | None:
    return next((point for point in curve if point["accuracy"] >= target), None)


def clock_time(run: dict[str, Any], target: float, clock: str) -> tuple[float, bool]:
    """(seconds on `clock` to `target`, reached?); a run that did not reach it gives the time
    it ran, which its time to the target would have exceeded (a lower bound)."""
    point = _first(run["curve"], target)
    end = run["curve"][-1] if run["curve"] else {"since_launch": 0.0}
    if clock == "training":
        return (point["seconds"], True) if point else (run["train_seconds"], False)
    if clock == "with_eval":
        if point:
            return point["seconds"] + point["eval_seconds"], True
        return run["train_seconds"] + run["eval_seconds"], False
    return (point["since_launch"], True) if point else (end["since_launch"], False)


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def _group(runs: list[dict[str, Any]], device: str) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if run["device"].startswith(device):
            groups.setdefault(run["name"], []).append(run)
    return groups


def ratio(base: list[dict[str, Any]], fast: list[dict[str, Any]], target: float, clock: str) -> str:
    """`fast`'s speed-up over `base` on one clock: the ratio of medians and its range over
    repeats ('>=' where the baseline never reached the target)."""
    fast_times = [clock_time(r, target, clock) for r in fast]
    if not all(reached for _, reached in fast_times):
        return "n/a (not every run reached the target)"
    base_times = [clock_time(r, target, clock) for r in base]
    lower = not all(reached for _, reached in base_times)
    f, b = [t for t, _ in fast_times], [t for t, _ in base_times]
    value = statistics.median(b) / statistics.median(f)
    spread = f"repeats {min(b) / max(f):.2f}-{max(b) / min(f):.2f}x"
    return f"{'>= ' if lower else ''}{value:.2f}x ({spread})"


def run_row(name: str, group: list[dict[str, Any]], target: float) -> str:
    reached = [r for r in group if r["reached"]]
    cells = [name, ", ".join(group[0]["algorithms"]) or "-", f"{len(reached)}/{len(group)}"]
    for clock in CLOCKS:
        cells.append(_spread([clock_time(r, target, clock)[0] for r in reached]))
    missed = [r for r in group if not r["reached"]]
    if missed:
        why = sorted({r["stop_reason"] or f"end of its {r['budget']} budget" for r in missed})
        cells[2] += f" (not after {_spread([r['train_seconds'] for r in missed])} training s: "
        cells[2] += ", ".join(why) + ")"
    share = [r["eval_seconds"] / max(r["curve"][-1]["since_launch"], 1e-9) for r in group]
    best = statistics.median(r["best_accuracy"] or 0.0 for r in group)
    cells += [
        _spread([r["startup_seconds"] for r in group]),
        _spread([r["epochs_to_target"] for r in reached]),
        f"{best:.4f}",
        f"{statistics.median(share):.0%}",
    ]
    return "| " + " | ".join(cells) + " |"


def device_section(runs: list[dict[str, Any]], device: str, target: float) -> list[str]:
    groups = _group(runs, device)
    if not groups:
        return []
    first = next(iter(groups.values()))[0]
    where = first["device_name"] if device == "cuda" else f"CPU, {first['threads']} thread(s)"
    header = ["run", "methods", f"reached {target:.1%}"]
    header += [f"{label} to {target:.1%}" for label in CLOCKS.values()]
    header += ["start-up s", "epochs to target", "best accuracy", "evaluation share of wall"]
    lines = [
        f"### {where}: time to {target:.1%} test accuracy",
        "",
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *(run_row(name, group, target) for name, group in groups.items()),
        "",
    ]
    reference = next(iter(groups))  # the first recipe named: the baseline (or, ablation: fast)
    base = groups[reference]
    for name, group in groups.items():
        if name != reference:
            parts = [f"{label} {ratio(base, group, target, c)}" for c, label in CLOCKS.items()]
            lines.append(f"- **speed-up of {name} over {reference}**: " + "; ".join(parts) + ".")
    missed = [r for r in base if not r["reached"]]
    if missed:
        per_epoch = statistics.median(
            r["train_seconds"] / max(r["epochs_done"], 1e-9) for r in missed
        )
        budget = missed[0]["budget_epochs"]
        cut = sorted({r["stop_reason"] for r in missed if r["stop_reason"]})
        lines.append(
            f"- {reference} did not reach {target:.1%} in {len(missed)}/{len(base)} runs, so the "
            "ratios are lower bounds (its time to the target is more than the time it trained). "
            f"At its {per_epoch:.1f} training s per epoch its whole {budget:g}-epoch budget is "
            f"{per_epoch * budget:.0f} s"
            + (f" ({', '.join(cut)} stopped it before the end)." if cut else ".")
        )
    lower = [t for t in (0.91, 0.92, 0.925) if t < target]
    return [*lines, "", *threshold_rows(groups, [*lower, target])]


def threshold_rows(groups: dict[str, list[dict[str, Any]]], thresholds: list[float]) -> list[str]:
    """Median training seconds to several accuracies (every repeat must reach one to count)."""
    names = list(groups)
    lines = [
        "| accuracy | " + " | ".join(f"{n}: training s" for n in names) + " |",
        "|" + " --- |" * (len(names) + 1),
    ]
    for threshold in thresholds:
        cells, base = [], None
        for name in names:
            times = [clock_time(r, threshold, "training") for r in groups[name]]
            if not all(reached for _, reached in times):
                count = sum(reached for _, reached in times)
                cells.append(f"not reached ({count}/{len(times)})")
                continue
            median = statistics.median(t for t, _ in times)
            base = median if name == names[0] else base
            cells.append(
                f"{median:.1f}" + (f" ({base / median:.2f}x)" if base and name != names[0] else "")
            )
        lines.append(f"| {threshold:.1%} | " + " | ".join(cells) + " |")
    return lines


def race_report(payload: dict[str, Any]) -> list[str]:
    target = payload["target"]
    smoke = "; SMOKE settings (tiny model and data): not a measurement" if payload["smoke"] else ""
    lines = [
        f"## Fashion-MNIST race to {target:.1%} ({payload['machine']}, {payload['date']})",
        "",
        f"`{payload['command']}` (torch {payload['torch']}, {payload['wall_seconds']:.0f} s"
        f"{smoke})",
        "",
        "Each run evaluates after every epoch on the "
        + ("first 500 test images" if payload["smoke"] else "full 10,000-image test split")
        + " with the same evaluator (the recipe's evaluation-time methods included: flip TTA); "
        "training seconds exclude evaluation. Medians over repeats, (min-max) in brackets.",
        "",
    ]
    if payload.get("gpu_parallel", 1) > 1:
        lines += [
            f"**An accuracy sweep**: {payload['gpu_parallel']} GPU runs shared the GPU at once, "
            "so their times are not race times; read the accuracies.",
            "",
        ]
    for device in ("cpu", "cuda"):
        lines += [*device_section(payload["runs"], device, target), ""]
    failed = {k: v for k, v in payload["statuses"].items() if v != "ok"}
    if failed:
        lines.append("Runs that failed: " + ", ".join(f"{k} ({v})" for k, v in failed.items()))
    return lines
