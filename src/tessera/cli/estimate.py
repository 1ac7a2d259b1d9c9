"""`tessera estimate`: what a run will cost before it starts, the frontier after, serving cost.

    tessera estimate RECIPE [key=value ...] [--gpu h100] [--gpus 8] [--price 2.50] [--probe N]
    tessera estimate frontier RUN [RUN ...] [--metric eval/accuracy] [--price P] [--out F.png]
    tessera estimate serve RUN [--gpu h200] [--price 3.00] [--benchmark B.json | --probe]

docs/estimate.md explains every number.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tessera.cli.options import COUNT, PRICE

DESCRIPTION = (
    "Estimate a run before it starts: `tessera estimate RECIPE [key=value ...]` gives wall time, "
    "GPU hours and dollars (low / expected / high) and the memory plan per GPU, from tables "
    "(--gpu, --gpus) or from N steps measured here (--probe N). `tessera estimate frontier "
    "RUN ...` tables and plots finished runs' quality against cost with the Pareto frontier. "
    "`tessera estimate serve RUN` gives dollars per million generated tokens. Each form has its "
    "own --help (e.g. `tessera estimate frontier --help`). The model behind every number: "
    "docs/estimate.md."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "estimate",
        help="time, dollars and memory of a run; frontier; serving cost",
        description=DESCRIPTION,
    )
    parser.add_argument("target", help="recipe (YAML), or 'frontier' or 'serve'")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of that form")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.target in FORMS:
        parser, handler = FORMS[args.target]
        return handler(parser().parse_args(args.rest))
    return _recipe(args.target, recipe_parser().parse_args(args.rest))


# -- before a run ---------------------------------------------------------------------------


def recipe_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tessera estimate RECIPE", description=DESCRIPTION)
    parser.add_argument("overrides", nargs="*", help="key=value overrides, as for train")
    parser.add_argument(
        "--gpu",
        default=None,
        help="device from the table (h100, h200, a100-40gb, "
        "a100-80gb, l4, l40s, cpu); default: this machine's",
    )
    parser.add_argument("--gpus", type=COUNT, default=1, help="number of GPUs (default 1)")
    parser.add_argument("--price", type=PRICE, default=None, help="dollars per GPU hour")
    parser.add_argument(
        "--probe",
        type=COUNT,
        default=None,
        metavar="N",
        help="measure N steps here (after one warm-up step) instead of the table",
    )
    parser.add_argument(
        "--json", default=None, metavar="PATH", help="also write the estimate as JSON"
    )
    return parser


def _recipe(recipe: str, args: argparse.Namespace) -> int:
    from tessera.config import load_config
    from tessera.core.errors import UserError
    from tessera.estimate.hardware import get_hardware, local_hardware
    from tessera.estimate.plan import (
        check_gpus,
        check_price,
        estimate_from_probe,
        estimate_from_table,
    )
    from tessera.estimate.report import format_estimate
    from tessera.estimate.workload import read_workload

    unknown = [item for item in args.overrides if "=" not in item]
    if unknown:
        raise UserError(
            f"tessera estimate: {' '.join(unknown)} is neither an option nor a key=value "
            "override; see `tessera estimate RECIPE --help`"
        )
    check_price(args.price)
    check_gpus(args.gpus)
    hardware = get_hardware(args.gpu) if args.gpu else None  # unknown names fail before work
    import_seconds = _run_imports_seconds() if args.probe is not None else 0.0
    config = load_config(recipe, args.overrides)
    workload = read_workload(config, recipe)
    if args.probe is not None:
        from tessera.estimate.probe import run_probe

        here = local_hardware()
        if hardware is not None and hardware.name != here.name:
            raise UserError(
                f"--probe measures this machine ({here.description}), not {hardware.name}; "
                "leave --gpu out, or run the probe on that GPU"
            )
        result = run_probe(config, args.probe, import_seconds)
        estimate = estimate_from_probe(config, workload, here, result, args.gpus, args.price)
    else:
        estimate = estimate_from_table(
            config, workload, hardware or local_hardware(), args.gpus, args.price
        )
    print(format_estimate(estimate))
    if args.json:
        _write_json(args.json, estimate.to_dict())
    return 0


def _run_imports_seconds() -> float:
    """Seconds from the process start through the imports a training run makes: the part of a
    run's start-up that the probe, running inside this process, does not see itself."""
    import torchmetrics  # noqa: F401

    import tessera.config.build  # noqa: F401
    from tessera.callbacks.cost_monitor import process_age

    return process_age()


# -- after runs: the frontier ---------------------------------------------------------------


def _frontier_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tessera estimate frontier",
        description="Quality against cost of finished runs, with the Pareto frontier marked. "
        "Cost comes from each run's cost.json (`tessera train --price`), or its wall time x "
        "--price, or else the axis is wall-clock seconds.",
    )
    parser.add_argument("runs", nargs="*", help="run folders (runs/NAME)")
    parser.add_argument(
        "--metric",
        default=None,
        help="e.g. eval/accuracy (default: eval "
        "accuracy, else eval loss); lower is better for loss/perplexity/bits",
    )
    parser.add_argument(
        "--price", type=PRICE, default=None, help="dollars per GPU hour for runs without cost.json"
    )
    parser.add_argument("--out", default=None, help="PNG to write (needs tessera-train[plot])")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the points")
    return parser


def _frontier(args: argparse.Namespace) -> int:
    from tessera.estimate.frontier import frontier_table, plot_frontier, read_points

    points = read_points(args.runs, args.metric, args.price)
    print(frontier_table(points))
    if args.out:
        print(f"wrote {plot_frontier(points, args.out)}")
    if args.json:
        _write_json(args.json, {"points": [p.to_dict() for p in points]})
    return 0


# -- serving --------------------------------------------------------------------------------


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tessera estimate serve",
        description="Dollars per million generated tokens of a trained GPT at each concurrency, "
        "and how many served tokens cost as much as its training (cost.json of the run or "
        "--training-cost).",
    )
    parser.add_argument("run", help="run folder (or exported model folder)")
    parser.add_argument(
        "--gpu", default=None, help="device from the table (default: this machine's)"
    )
    parser.add_argument("--price", type=PRICE, required=True, help="dollars per GPU hour")
    parser.add_argument(
        "--benchmark", default=None, help="serving benchmark JSON (tokens/s per concurrency)"
    )
    parser.add_argument("--probe", action="store_true", help="measure generation here")
    parser.add_argument(
        "--concurrency",
        type=COUNT,
        nargs="+",
        default=[1, 8, 32],
        help="concurrent sequences (default 1 8 32)",
    )
    parser.add_argument(
        "--training-cost",
        type=PRICE,
        default=None,
        help="dollars the training cost (default: the run's cost.json)",
    )
    parser.add_argument(
        "--revenue-per-million",
        type=PRICE,
        default=None,
        help="what a million tokens sells for: adds the pay-back point",
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the result")
    return parser


def _serve(args: argparse.Namespace) -> int:
    from tessera.core.errors import UserError
    from tessera.estimate import serving
    from tessera.estimate.hardware import get_hardware, local_hardware
    from tessera.estimate.plan import check_price
    from tessera.estimate.report import money
    from tessera.estimate.runs import read_cost

    price = check_price(args.price) or 0.0
    check_price(args.training_cost, "--training-cost")
    if any(c < 1 for c in args.concurrency):
        raise UserError(f"--concurrency: {args.concurrency} must all be 1 or more")
    hardware = get_hardware(args.gpu) if args.gpu else None
    if args.benchmark:
        points = serving.read_benchmark(args.benchmark)
    elif args.probe:
        points = serving.probe_points(args.run, args.concurrency)
    else:
        model = serving.model_shape(args.run)
        points = serving.table_points(model, hardware or local_hardware(), args.concurrency)
    training = args.training_cost
    if training is None:
        cost = read_cost(args.run)
        training = float(cost["dollars"]) if cost else None
    print("| concurrency | tokens/s | $ per million tokens | source |")
    print("| --- | --- | --- | --- |")
    rows = []
    for point in points:
        per_million = point.dollars_per_million(price)
        row: dict[str, Any] = {
            "concurrency": point.concurrency,
            "tokens_per_second": point.tokens_per_second,
            "dollars_per_million_tokens": per_million,
            "source": point.source,
        }
        if training is not None:
            row.update(serving.break_even(training, point, price, args.revenue_per_million))
        rows.append(row)
        print(
            f"| {point.concurrency} | {point.tokens_per_second:,.1f} | {money(per_million)} | "
            f"{point.source} |"
        )
    if training is None:
        print("break-even: no training cost known (no cost.json in the run; give --training-cost)")
    else:
        for row in rows:
            tokens = row["tokens_costing_the_training"]
            line = (
                f"break-even at concurrency {row['concurrency']}: serving "
                f"{tokens:,.3g} tokens costs what training did ({money(training)})"
            )
            if "tokens_to_pay_back_training" in row:
                back = row["tokens_to_pay_back_training"]
                line += (
                    "; never paid back at that revenue"
                    if back is None
                    else (f"; {back:,.3g} tokens sold pay it back")
                )
            print(line)
    if args.json:
        _write_json(
            args.json, {"price_per_gpu_hour": price, "training_dollars": training, "points": rows}
        )
    return 0


def _write_json(path: str, data: dict[str, Any]) -> None:
    from tessera.core.files import atomic_write

    text = json.dumps(data, indent=2, default=str) + "\n"
    atomic_write(Path(path), lambda file: file.write(text), mode="w")


# The forms other than a recipe: `tessera estimate NAME ...` -> (its parser, its handler).
FORMS: dict[str, tuple[Any, Any]] = {
    "frontier": (_frontier_parser, _frontier),
    "serve": (_serve_parser, _serve),
}
