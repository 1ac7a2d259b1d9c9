"""The frontier pictures of docs/estimate.md, drawn from existing benchmark results (no training):

* the Fashion-MNIST recipe ladder and single-method runs on one H100
  (benchmarks/results/time_to_accuracy_gpu.json: training seconds, final test accuracy);
* the char-GPT races on the H100, nanoGPT and Tessera variants
  (benchmarks/results/gpu/race_h100_call{2,3,4}.json: process wall seconds, final val loss).

Cost = seconds x --price / 3600 on one GPU (those runs predate cost.json).

    python benchmarks/frontier_figures.py --price 2.50 --out docs/estimate
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
RESULTS = ROOT / "benchmarks" / "results"


def ladder_points(price: float) -> list:
    from tessera.estimate.frontier import RunPoint

    data = json.loads((RESULTS / "time_to_accuracy_gpu.json").read_text())
    source = "time_to_accuracy_gpu.json training seconds"
    return [
        RunPoint(
            run["name"],
            "time_to_accuracy_gpu.json",
            "metrics/eval/accuracy",
            run["final_accuracy"],
            run["train_seconds"],
            run["train_seconds"] * price / 3600,
            source,
        )
        for run in data["runs"]
    ]


def race_points(price: float) -> list:
    from tessera.estimate.frontier import RunPoint

    points = []
    for call in (2, 3, 4):
        data = json.loads((RESULTS / "gpu" / f"race_h100_call{call}.json").read_text())
        for name, run in data.items():
            if not isinstance(run, dict) or not run.get("history"):
                continue
            seconds = run["wall_seconds"]
            points.append(
                RunPoint(
                    f"{name} (call {call})",
                    f"race_h100_call{call}.json",
                    "metrics/eval/loss",
                    run["history"][-1]["val_loss"],
                    seconds,
                    seconds * price / 3600,
                    "race wall seconds",
                )
            )
    return points


def main() -> int:
    from tessera.estimate.frontier import frontier_table, mark_frontier, plot_frontier

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--price", type=float, default=2.50, help="dollars per H100 hour")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "estimate")
    args = parser.parse_args()
    figures = {
        "fashion_mnist_frontier.png": (
            ladder_points(args.price),
            True,
            "Fashion-MNIST on one H100: accuracy vs cost",
        ),
        "char_gpt_frontier.png": (
            race_points(args.price),
            False,
            "char GPT on one H100: val loss vs cost",
        ),
    }
    for name, (points, maximize, title) in figures.items():
        mark_frontier(points, maximize, use_dollars=True)
        print(f"## {title}\n\n{frontier_table(points)}\n")
        print(f"wrote {plot_frontier(points, args.out / name, title)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
