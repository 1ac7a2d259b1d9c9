"""Reading finished run folders (metrics.jsonl, cost.json), and matplotlib behind its extra."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tessera.core.errors import UserError


def metrics_file(run: str | Path) -> Path:
    """`run/metrics.jsonl`, or a clear error saying what a run folder holds."""
    path = Path(run)
    candidate = path if path.is_file() else path / "metrics.jsonl"
    if not candidate.is_file():
        raise UserError(
            f"{run}: no metrics.jsonl here; give a run folder written by `tessera train` with "
            "the jsonl logger (runs/NAME), or its metrics.jsonl"
        )
    return candidate


def read_records(run: str | Path) -> list[dict[str, Any]]:
    """Every metrics record of a run (hyperparameter and resume lines left out), in order."""
    from tessera.loggers.jsonl import read_jsonl

    path = metrics_file(run)
    try:
        return [record for record in read_jsonl(path) if "step" in record]
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not a readable metrics file ({error})") from None


def read_cost(run: str | Path) -> dict[str, Any] | None:
    """The run's cost.json (written by the cost_monitor callback), or None."""
    path = Path(run)
    path = (path.parent if path.is_file() else path) / "cost.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not readable JSON ({error}); remove or rewrite it") from None


def series(records: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) for every record holding `key` with a finite number."""
    points = []
    for record in records:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            points.append((int(record["step"]), float(value)))
    return points


def resolve_metric(records: list[dict[str, Any]], name: str, where: str) -> str:
    """The JSONL key for a metric given as 'eval/accuracy' or 'metrics/eval/accuracy'."""
    keys = {key for record in records for key in record}
    for candidate in (name, f"metrics/{name}"):
        if candidate in keys:
            return candidate
    from tessera.core.errors import did_you_mean

    known = sorted(k for k in keys if k not in ("step", "time"))
    raise UserError(
        f"{where}: no metric {name!r} in its metrics.jsonl; {did_you_mean(name, known)}"
    )


def wall_seconds(records: list[dict[str, Any]]) -> float:
    """Seconds between the first and the last metrics record."""
    times = [float(r["time"]) for r in records if isinstance(r.get("time"), (int, float))]
    return max(times) - min(times) if len(times) > 1 else 0.0


def pyplot() -> Any:
    """matplotlib.pyplot with a file-only backend, or an error naming the extra to install."""
    try:
        import matplotlib
    except ImportError:
        raise UserError(
            "plots need matplotlib, which is not installed; run pip install 'tessera-train[plot]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, out: str | Path) -> Path:
    """Write a figure as PNG through a temporary file, so a failed write leaves no half file."""
    import os
    import tempfile

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out: {out} must end in .png")
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".png", dir=out.parent)
    os.close(handle)
    try:
        figure.savefig(temporary, dpi=120, bbox_inches="tight")
        os.replace(temporary, out)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return out
