"""`tessera eval RUN_OR_CHECKPOINT`: evaluate trained weights on the run's evaluation data.

It uses the `Evaluator` component alone: no optimizer, no training state.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint on a dataset",
        description="Evaluate a run folder (its final model), a final/ model folder, or a "
        "checkpoint .pt file, on the evaluation data of its recipe (or of --recipe); with "
        "--tasks, on in-context-learning tasks (docs/eval.md). Overrides may change the data "
        "and device, not the model's shape.",
    )
    parser.add_argument("checkpoint", nargs="?", help="run folder, final/ folder or checkpoint")
    parser.add_argument(
        "--recipe",
        help="recipe to take model and data from (default: the run folder's config.yaml)",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides (e.g. data.path=...)")
    from tessera.eval.cli import add_task_arguments  # --tasks: the ICL harness (tessera.eval)

    add_task_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.tasks is not None:
        from tessera.eval.cli import run_tasks

        return run_tasks(args)
    if args.checkpoint is None:
        from tessera.core.errors import UserError

        raise UserError("tessera eval: give a run folder, final/ folder or checkpoint file")

    from tessera.config.build import build_data, build_trained_model
    from tessera.core.evaluator import Evaluator
    from tessera.parallel.process_group import start

    recipe = Path(args.recipe) if args.recipe else None
    config, model, weights = build_trained_model(Path(args.checkpoint), recipe, args.overrides)
    device = start(device=config.device).device
    data = build_data(config, model=model)
    evaluator = Evaluator(data.eval, device=device, precision=config.precision)
    results = evaluator.evaluate(model.to(device))
    print(json.dumps({"checkpoint": str(weights), "eval": results}))
    return 0
