"""Results as JSON, as a markdown table, and as a rich table on the console."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tessera.core.files import atomic_write
from tessera.eval.harness import TaskResult

RESULTS_NAME = "icl_results"


def results_document(
    results: list[TaskResult], gauntlet: dict[str, Any] | None, info: dict[str, Any]
) -> dict[str, Any]:
    """Everything a run of the harness found, as one JSON-ready dict."""
    return {
        **info,
        "results": [result.to_dict() for result in results],
        "gauntlet": gauntlet,
    }


def _number(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.4g}"


def _rows(results: list[TaskResult]) -> list[list[str]]:
    rows = []
    for result in results:
        shown = ", ".join(f"{name} {_number(value)}" for name, value in result.metrics.items())
        rate = result.examples / max(result.seconds, 1e-9)
        truncated = f"{result.truncated}" if result.truncated else "0"
        rows.append(
            [
                result.task,
                str(result.num_fewshot),
                shown,
                str(result.examples),
                truncated,
                f"{rate:,.1f}",
            ]
        )
    return rows


HEADERS = ["task", "shots", "metrics", "examples", "truncated", "examples/s"]


def markdown(results: list[TaskResult], gauntlet: dict[str, Any] | None) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + " --- |" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(results)]
    if gauntlet and gauntlet["categories"]:
        lines += ["", f"Gauntlet `{gauntlet['name']}` (scores rescaled above random guessing):", ""]
        lines += ["| category | score | tasks |", "| --- | --- | --- |"]
        for category, part in gauntlet["categories"].items():
            tasks = ", ".join(f"{label} {value:.3f}" for label, value in part["tasks"].items())
            lines.append(f"| {category} | {part['score']:.4f} | {tasks} |")
        lines.append(f"| **average** | **{gauntlet['average']:.4f}** | |")
    return "\n".join(lines) + "\n"


def print_tables(results: list[TaskResult], gauntlet: dict[str, Any] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="in-context-learning evaluation")
    for header in HEADERS:
        left = header in ("task", "metrics")
        table.add_column(header, justify="left" if left else "right", no_wrap=header == "task")
    for row in _rows(results):
        table.add_row(*row)
    console.print(table)
    truncated = [r for r in results if r.truncated]
    for result in truncated:
        console.print(
            f"[yellow]{result.label}: {result.truncated} of {result.examples} examples were "
            "longer than the model's window; their contexts were cut from the left[/]"
        )
    if gauntlet and gauntlet["categories"]:
        summary = Table(title=f"gauntlet {gauntlet['name']} (rescaled above random)")
        summary.add_column("category")
        summary.add_column("score", justify="right")
        for category, part in gauntlet["categories"].items():
            summary.add_row(category, f"{part['score']:.4f}")
        summary.add_row("[bold]average[/]", f"[bold]{gauntlet['average']:.4f}[/]")
        console.print(summary)


def write_results(folder: Path, document: dict[str, Any], table: str) -> tuple[Path, Path]:
    """`icl_results.json` and `icl_results.md` in `folder`, each written atomically."""
    text = json.dumps(document, indent=1)
    json_path, md_path = folder / f"{RESULTS_NAME}.json", folder / f"{RESULTS_NAME}.md"
    atomic_write(json_path, lambda file: file.write(text), mode="w")
    atomic_write(md_path, lambda file: file.write(table), mode="w")
    return json_path, md_path
