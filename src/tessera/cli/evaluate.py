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
        "checkpoint .pt file, on the evaluation data of its recipe (or of --recipe). "
        "Overrides may change the data and device, not the model's shape.",
    )
    parser.add_argument("checkpoint", help="run folder, final/ folder or checkpoint file")
    parser.add_argument(
        "--recipe",
        help="recipe to take model and data from (default: the run folder's config.yaml)",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides (e.g. data.path=...)")
    parser.set_defaults(func=run)


def _locate(checkpoint: Path) -> tuple[Path | None, Path]:
    """(run config if found, weights file) for a run folder, final/ folder or .pt file."""
    from tessera.core.errors import CheckpointError

    if checkpoint.is_dir() and (checkpoint / "final" / "model.safetensors").exists():
        return checkpoint / "config.yaml", checkpoint / "final" / "model.safetensors"
    if checkpoint.is_dir() and (checkpoint / "model.safetensors").exists():
        return checkpoint.parent / "config.yaml", checkpoint / "model.safetensors"
    if checkpoint.is_file():
        return checkpoint.parent.parent / "config.yaml", checkpoint
    raise CheckpointError(
        f"{checkpoint} is not a run folder with a final model, a final/ model folder or a "
        "checkpoint file"
    )


def run(args: argparse.Namespace) -> int:
    from tessera.config import load_config
    from tessera.config.build import build_data, build_model
    from tessera.core.checkpointer import read_checkpoint
    from tessera.core.errors import CheckpointError, ConfigError
    from tessera.core.evaluator import Evaluator
    from tessera.core.export import load_network_weights, read_model_file
    from tessera.parallel.process_group import start

    run_config, weights = _locate(Path(args.checkpoint))
    recipe = Path(args.recipe) if args.recipe else run_config
    if recipe is None or not recipe.exists():
        raise ConfigError(f"no recipe found for {args.checkpoint}; pass --recipe RECIPE.yaml")
    config = load_config(recipe, args.overrides)
    model = build_model(config)
    if weights.suffix == ".safetensors":
        load_network_weights(model, read_model_file(weights), str(weights))
    else:
        state = read_checkpoint(weights)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise CheckpointError(
                f"{weights} does not fit the recipe's model: {str(error).splitlines()[0]}"
            ) from None
    device = start(device=config.device).device
    data = build_data(config)
    evaluator = Evaluator(data.eval, device=device, precision=config.precision)
    results = evaluator.evaluate(model.to(device))
    print(json.dumps({"checkpoint": str(weights), "eval": results}))
    return 0
