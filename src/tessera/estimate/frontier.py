"""The cost/quality frontier of finished runs: a table and a PNG with the Pareto frontier marked.

Each run is one point: x = its cost in dollars (cost.json, or wall seconds x `price`) or, when
no price is known, its wall-clock seconds; y = the final value of the chosen metric. A run is
on the frontier when no other run is at least as good on both axes and better on one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera.core.errors import UserError
from tessera.estimate.runs import (
    pyplot,
    read_cost,
    read_records,
    resolve_metric,
    save_figure,
    series,
    wall_seconds,
)

LOWER_IS_BETTER = ("loss", "perplexity", "bits", "error")


@dataclass
class RunPoint:
    name: str
    path: str
    metric: str
    quality: float
    seconds: float
    dollars: float | None
    cost_source: str
    on_frontier: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def higher_is_better(metric: str) -> bool:
    return not any(word in metric.lower() for word in LOWER_IS_BETTER)


def read_points(
    runs: list[str], metric: str | None = None, price: float | None = None
) -> list[RunPoint]:
    """One point per run folder; every run must hold the metric."""
    if not runs:
        raise UserError(
            "frontier: no runs given; name finished run folders, e.g. "
            "`tessera estimate frontier runs/fashion-mnist-*`"
        )
    if price is not None and price < 0:
        raise UserError(f"--price: {price} is negative; give dollars per GPU hour >= 0")
    points = []
    for run in runs:
        records = read_records(run)
        key = resolve_metric(records, metric or _default_metric(records), run)
        values = series(records, key)
        if not values:
            raise UserError(f"{run}: {key} holds no finite value in its metrics.jsonl")
        cost = read_cost(run)
        seconds = float(cost["wall_seconds"]) if cost else wall_seconds(records)
        if cost is not None:
            dollars, source = float(cost["dollars"]), "cost.json"
        elif price is not None:
            dollars, source = seconds * price / 3600, f"metrics.jsonl time x ${price}/h, 1 GPU"
        else:
            dollars, source = None, "metrics.jsonl time"
        points.append(
            RunPoint(Path(run).name, str(run), key, values[-1][1], seconds, dollars, source)
        )
    mark_frontier(points, higher_is_better(points[0].metric), use_dollars=_all_priced(points))
    return points


def _default_metric(records: list[dict[str, Any]]) -> str:
    keys = {key for record in records for key in record}
    for name in ("metrics/eval/accuracy", "metrics/eval/loss"):
        if name in keys:
            return name
    raise UserError(
        "frontier: these runs log neither metrics/eval/accuracy nor metrics/eval/loss; name "
        "the metric with --metric"
    )


def _all_priced(points: list[RunPoint]) -> bool:
    return all(point.dollars is not None for point in points)


def mark_frontier(points: list[RunPoint], maximize: bool, use_dollars: bool) -> None:
    """Set `on_frontier` for the points no other point dominates."""

    def cost(point: RunPoint) -> float:
        return point.dollars if use_dollars and point.dollars is not None else point.seconds

    def better(a: float, b: float) -> bool:
        return a > b if maximize else a < b

    for point in points:
        point.on_frontier = not any(
            cost(other) <= cost(point)
            and not better(point.quality, other.quality)
            and (cost(other) < cost(point) or better(other.quality, point.quality))
            for other in points
            if other is not point
        )


def frontier_table(points: list[RunPoint]) -> str:
    """A markdown table, cheapest first; frontier runs are marked."""
    priced = _all_priced(points)
    rows = sorted(points, key=lambda p: (p.dollars if priced else p.seconds) or 0.0)
    lines = [
        f"| run | {points[0].metric} | wall time | cost | on frontier |",
        "| --- | --- | --- | --- | --- |",
    ]
    for p in rows:
        cost = f"${p.dollars:,.4f}" if p.dollars is not None else "-"
        mark = "yes" if p.on_frontier else ""
        lines.append(f"| {p.name} | {p.quality:.4f} | {p.seconds:,.1f} s | {cost} | {mark} |")
    return "\n".join(lines)


def plot_frontier(points: list[RunPoint], out: str | Path, title: str | None = None) -> Path:
    """Quality against cost (or time), every run labelled, the frontier joined by a line."""
    plt = pyplot()
    priced = _all_priced(points)

    def x(point: RunPoint) -> float:
        return point.dollars if priced and point.dollars is not None else point.seconds

    figure, axes = plt.subplots(figsize=(7, 4.5))
    others = [p for p in points if not p.on_frontier]
    frontier = sorted((p for p in points if p.on_frontier), key=x)
    axes.scatter([x(p) for p in others], [p.quality for p in others], color="0.6", label="run")
    axes.plot(
        [x(p) for p in frontier],
        [p.quality for p in frontier],
        "o-",
        color="tab:red",
        label="Pareto frontier",
    )
    for p in points:
        axes.annotate(
            p.name, (x(p), p.quality), textcoords="offset points", xytext=(4, 4), fontsize=8
        )
    axes.set_xlabel("cost (dollars)" if priced else "wall-clock seconds")
    axes.set_ylabel(points[0].metric)
    axes.set_title(title or "quality vs cost")
    axes.grid(alpha=0.3)
    axes.legend()
    try:
        return save_figure(figure, out)
    finally:
        plt.close(figure)
