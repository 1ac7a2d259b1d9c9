"""Time-to-accuracy: train recipes to a fixed test accuracy and compare wall-clock times.

    # run recipes (and single-method ablations on the baseline) to a target, several seeds
    python benchmarks/time_to_accuracy.py run --recipes baseline mild medium hot \
        --seeds 0 1 --target 0.93 --output benchmarks/results/tta_gpu.json
    # turn one or more result files into the markdown table and the PNG plot
    python benchmarks/time_to_accuracy.py report benchmarks/results/tta_*.json

Each run builds the recipe (`recipes/fashion-mnist-<name>.yaml`, plus `--set key=value`
overrides) with Tessera's own builders, evaluates every `--eval-interval`, and stops at the
first evaluation at or above the target (ThresholdStopper). Training time excludes the time
spent evaluating; both wall-clock and process CPU seconds are recorded (the CPU machine is
shared, so CPU seconds are the steadier measure there). Results are written after every run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tessera.algorithms import build_algorithms  # noqa: E402
from tessera.callbacks.early_stopping import ThresholdStopper  # noqa: E402
from tessera.config.build import build_data, build_model  # noqa: E402
from tessera.config.load import load_config  # noqa: E402
from tessera.core.callback import Callback  # noqa: E402
from tessera.core.time import TimeUnit  # noqa: E402
from tessera.trainer import Trainer  # noqa: E402

# Hyper-parameters of each method when it is added alone to the baseline (the ablation).
ABLATION_KWARGS: dict[str, dict[str, Any]] = {
    "blurpool": {"min_channels": 16},
    "channels_last": {},
    "label_smoothing": {"smoothing": 0.1},
    "ema": {"smoothing": 0.99},
    "swa": {"start": 0.6, "update_interval": 20},
    "progressive_resizing": {"initial_scale": 0.5, "delay": 0.25, "finetune": 0.3},
    "selective_backprop": {"keep": 0.5, "start": 0.2, "end": 0.7, "interrupt": 2},
    "colout": {"p_row": 0.15, "p_col": 0.15},
    "cutout": {"length": 0.25},
    "mixup": {"alpha": 0.2},
    "cutmix": {"alpha": 1.0},
    "squeeze_excite": {"min_channels": 32, "latent_channels": 0.25},
    "stochastic_depth": {"drop_rate": 0.1},
    "ghost_batchnorm": {"ghost_batch_size": 64},
    "layer_freezing": {"freeze_start": 0.6, "freeze_level": 0.5},
    "gradient_clipping": {"clipping_type": "norm", "threshold": 2.0},
    "fused_optimizer": {"kind": "foreach"},
    "randaugment": {"depth": 1, "severity": 5},
    "sam": {"rho": 0.05, "interval": 2},
    "weight_standardization": {},
    "factorize": {"min_features": 32, "latent_features": 0.5},
}


class TrainingClock(Callback):
    """Training time excluding evaluation, and the accuracy curve at each evaluation."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.curve: list[dict[str, float]] = []
        self.wall = self.cpu = 0.0
        self._wall_start = self._cpu_start = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _resume(self) -> None:
        self._wall_start, self._cpu_start = time.perf_counter(), time.process_time()

    def _pause(self) -> None:
        self._sync()
        self.wall += time.perf_counter() - self._wall_start
        self.cpu += time.process_time() - self._cpu_start

    def fit_start(self, state, logger) -> None:
        self._sync()
        self._resume()

    def eval_start(self, state, logger) -> None:
        self._pause()

    def eval_end(self, state, logger) -> None:
        accuracy = state.eval_results["eval"]["accuracy"]
        self.curve.append(
            {
                "seconds": round(self.wall, 3),
                "cpu_seconds": round(self.cpu, 3),
                "samples": state.timestamp.sample,
                "epoch": round(state.position(TimeUnit.EPOCH), 3),
                "accuracy": accuracy,
            }
        )
        self._resume()


def build_run(
    recipe: str,
    seed: int,
    overrides: list[str],
    extra: dict[str, Any] | None,
    device: str,
    eval_interval: str,
    target: float,
    stop: bool = True,
):
    path = ROOT / "recipes" / f"fashion-mnist-{recipe}.yaml"
    config = load_config(path, [*overrides, f"seed={seed}", f"eval_interval={eval_interval}"])
    algorithms_spec = {name: c.model_dump() for name, c in config.algorithms.items()}
    algorithms_spec.update(extra or {})
    model = build_model(config)
    data = build_data(config)
    clock = TrainingClock(torch.device(device))
    stopper = ThresholdStopper(monitor="metrics/eval/accuracy", threshold=target, stop=stop)
    trainer = Trainer(
        model,
        data.train,
        config.max_duration,
        eval_data=data.eval,
        eval_interval=config.eval_interval,
        optimizers=config.optimizer,
        schedulers=config.scheduler if config.scheduler is not None else [],
        scale_schedule_ratio=config.scale_schedule_ratio,
        algorithms=build_algorithms(algorithms_spec),
        callbacks=[clock, stopper],
        loggers=[],
        run_dir=None,
        precision=config.precision,
        device=device,
        seed=config.seed,
    )
    return trainer, clock, stopper, config


def run_one(
    name: str, recipe: str, seed: int, args: argparse.Namespace, extra: dict[str, Any] | None
) -> dict[str, Any]:
    trainer, clock, stopper, config = build_run(
        recipe,
        seed,
        args.set,
        extra,
        args.device,
        args.eval_interval,
        args.target,
        not args.no_stop,
    )
    trainer.fit()
    reached = stopper.reached_at is not None
    best = max((point["accuracy"] for point in clock.curve), default=0.0)
    at_target = first_at(clock.curve, args.target)
    return {
        "name": name,
        "recipe": recipe,
        "extra": extra or {},
        "seed": seed,
        "max_duration": str(config.max_duration),
        "algorithms": sorted({**(config.algorithms or {}), **(extra or {})}),
        "reached": reached,
        "seconds_to_target": at_target["seconds"] if at_target else None,
        "cpu_seconds_to_target": at_target["cpu_seconds"] if at_target else None,
        "samples_to_target": at_target["samples"] if at_target else None,
        "final_accuracy": clock.curve[-1]["accuracy"] if clock.curve else None,
        "best_accuracy": best,
        "train_seconds": round(clock.wall, 3),
        "throughput": round(trainer.state.timestamp.sample / max(clock.wall, 1e-9), 1),
        "curve": clock.curve,
    }


def first_at(curve: list[dict[str, float]], target: float) -> dict[str, float] | None:
    """The first evaluation point at or above `target`, if any."""
    return next((point for point in curve if point["accuracy"] >= target), None)


def machine_description(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores (shared)"


def write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def command_run(args: argparse.Namespace) -> None:
    from rich.progress import Progress

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        # Untimed warm-up so CUDA/cuDNN start-up is not charged to the first recipe.
        warm_args = argparse.Namespace(**{**vars(args), "set": [*args.set, "max_duration=40ba"]})
        build_run("hot", 0, warm_args.set, None, args.device, "1ep", 2.0)[0].fit()
    # The recipe ladder over every seed first (the headline), then the one-method ablations.
    jobs = [(recipe, recipe, None, seed) for seed in args.seeds for recipe in args.recipes]
    for seed in args.seeds[: args.ablation_seeds]:
        for method in args.ablation:
            extra = {method: ABLATION_KWARGS.get(method, {})}
            jobs.append((f"baseline+{method}", "baseline", extra, seed))
    payload = {
        "command": "python " + " ".join(sys.argv),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_description(args.device),
        "device": args.device,
        "torch": torch.__version__,
        "target": args.target,
        "overrides": args.set,
        "eval_interval": args.eval_interval,
        "stop_at_target": not args.no_stop,
        "threads": torch.get_num_threads(),
        "runs": [],
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with Progress() as progress:
        task = progress.add_task("time to accuracy", total=len(jobs))
        for name, recipe, extra, seed in jobs:
            progress.update(task, description=f"{name} seed {seed}")
            result = run_one(name, recipe, seed, args, extra)
            payload["runs"].append(result)
            write_json(output, payload)
            reached = result["seconds_to_target"]
            progress.console.print(
                f"{name:>32} seed {seed}: "
                + (f"{reached:.1f}s to target" if reached is not None else "target not reached")
                + f", best {result['best_accuracy']:.4f}, {result['throughput']:.0f} samples/s"
            )
            progress.advance(task)
    print(f"wrote {output}")


# -- report --------------------------------------------------------------------------------


def summarise(runs: list[dict[str, Any]], target: float, key: str) -> dict[str, dict[str, Any]]:
    """Per run name: median (and min-max) of `key` ('seconds' or 'cpu_seconds') to target."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_name.setdefault(run["name"], []).append(run)
    table = {}
    for name, group in by_name.items():
        points = [first_at(r["curve"], target) for r in group]
        times = [p[key] for p in points if p is not None]
        table[name] = {
            "runs": len(group),
            "reached": len(times),
            "median": statistics.median(times) if len(times) == len(group) else None,
            "min": min(times) if times else None,
            "max": max(times) if times else None,
            "best": statistics.median(r["best_accuracy"] for r in group),
            "final": statistics.median(r["final_accuracy"] or 0.0 for r in group),
            "throughput": statistics.median(
                r["curve"][-1]["samples"] / max(r["curve"][-1][key], 1e-9) for r in group
            ),
            "algorithms": group[0]["algorithms"],
            "max_duration": group[0]["max_duration"],
        }
    return table


def markdown_table(payload: dict[str, Any], key: str, target: float) -> list[str]:
    table = summarise(payload["runs"], target, key)
    base = table.get("baseline", {})
    unit = "CPU s" if key.startswith("cpu") else "wall s"
    lines = [
        f"| run | methods | budget | seeds at {target:.3f} | median {unit} to {target:.3f} "
        "(min-max) | speed-up vs baseline | best acc. (median) | final acc. (median) "
        f"| samples per {unit[:-2] or 'wall'} s | throughput vs baseline |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in table.items():
        median = row["median"]
        speed = f"{base['median'] / median:.2f}x" if median and base.get("median") else "n/a"
        if median is not None:
            spread = f"{median:.1f} ({row['min']:.1f}-{row['max']:.1f})"
        else:
            spread = "not reached by every seed"
        ratio = (
            f"{row['throughput'] / base['throughput']:.2f}x" if base.get("throughput") else "n/a"
        )
        lines.append(
            f"| {name} | {', '.join(row['algorithms']) or '-'} | {row['max_duration']} | "
            f"{row['reached']}/{row['runs']} | {spread} | {speed} | {row['best']:.4f} | "
            f"{row['final']:.4f} | {row['throughput']:.0f} | {ratio} |"
        )
    return lines


def threshold_sweep(payload: dict[str, Any], thresholds: list[float], key: str) -> list[str]:
    """Speed-up over baseline at several accuracy thresholds, from the recorded curves."""
    names = list(dict.fromkeys(run["name"] for run in payload["runs"]))
    lines = [
        "| threshold | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for threshold in thresholds:
        table = summarise(payload["runs"], threshold, key)
        base = table["baseline"]["median"] if "baseline" in table else None
        cells = []
        for name in names:
            median = table[name]["median"]
            if median is None:
                cells.append(f"not reached ({table[name]['reached']}/{table[name]['runs']})")
            elif base:
                cells.append(f"{median:.0f} s ({base / median:.2f}x)")
            else:
                cells.append(f"{median:.0f} s")
        lines.append(f"| {threshold:.3f} | " + " | ".join(cells) + " |")
    return lines


def plot(payloads: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(payloads), figsize=(6.5 * len(payloads), 4.5), squeeze=False)
    for axis, payload in zip(axes[0], payloads):
        # On the shared CPU machine process CPU time is the steadier clock.
        key = "seconds" if payload["device"].startswith("cuda") else "cpu_seconds"
        colours: dict[str, Any] = {}
        for run in payload["runs"]:
            if run["extra"]:
                continue
            colour = colours.setdefault(run["name"], f"C{len(colours)}")
            xs = [p[key] for p in run["curve"]]
            ys = [p["accuracy"] for p in run["curve"]]
            label = run["name"] if run["seed"] == payload["runs"][0]["seed"] else None
            axis.plot(xs, ys, marker="o", markersize=3, color=colour, label=label, alpha=0.8)
        axis.axhline(payload["target"], color="grey", linestyle="--", linewidth=1)
        clock = "wall-clock" if key == "seconds" else "process CPU"
        axis.set_xlabel(f"training {clock} seconds (evaluation excluded)")
        axis.set_ylabel("test accuracy")
        setting = textwrap.fill(" ".join(payload["overrides"]), 90)
        axis.set_title(f"{payload['machine']} ({payload['date']})\n{setting}", fontsize=7)
        axis.set_ylim(0.6, min(1.0, payload["target"] + 0.04))
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def command_report(args: argparse.Namespace) -> None:
    payloads = [json.loads(Path(p).read_text()) for p in args.inputs]
    for payload in payloads:
        target = payload["target"]
        print(f"\n## {payload['machine']} ({payload['date']}), target {target}")
        print(f"`{payload['command']}`\n")
        print("\n".join(markdown_table(payload, "seconds", target)))
        if not payload["device"].startswith("cuda"):
            print()
            print("\n".join(markdown_table(payload, "cpu_seconds", target)))
        if args.thresholds:
            for key in ("seconds", "cpu_seconds"):
                print(f"\nMedian {key.replace('_', ' ')} to each threshold (speed-up):\n")
                print("\n".join(threshold_sweep(payload, args.thresholds, key)))
    if args.plot:
        plot(payloads, Path(args.plot))
        print(f"\nplot: {args.plot}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train recipes to the target and write a JSON result")
    run.add_argument("--recipes", nargs="*", default=["baseline", "mild", "medium", "hot"])
    run.add_argument("--ablation", nargs="*", default=[], help="methods to add alone to baseline")
    run.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    run.add_argument("--ablation-seeds", type=int, default=1, help="seeds per ablation run")
    run.add_argument("--target", type=float, default=0.93)
    run.add_argument("--eval-interval", default="1ep")
    run.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    run.add_argument("--set", nargs="*", default=[], help="recipe overrides key=value")
    run.add_argument("--output", default="benchmarks/results/time_to_accuracy.json")
    run.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (1 avoids OpenMP oversubscription on a busy shared machine)",
    )
    run.add_argument(
        "--no-stop", action="store_true", help="train each budget to the end (full curves)"
    )
    run.set_defaults(func=command_run)
    report = sub.add_parser("report", help="markdown tables and a plot from result files")
    report.add_argument("inputs", nargs="+")
    report.add_argument("--plot", default=None, help="PNG path for accuracy vs time")
    report.add_argument("--thresholds", nargs="*", type=float, default=[])
    report.set_defaults(func=command_report)
    from vision_race import add_parsers  # the fast-vs-baseline race: `race`, `race-one`

    add_parsers(sub)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
