"""`tessera eval RUN_OR_CHECKPOINT`: evaluate trained weights on the run's evaluation data."""

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
        "--tasks, on in-context-learning tasks (docs/eval.md).",
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
        f"{checkpoint} is not a run folder, a final/ model folder or a checkpoint file"
    )


def run(args: argparse.Namespace) -> int:
    if args.tasks is not None:
        from tessera.eval.cli import run_tasks

        return run_tasks(args)
    if args.checkpoint is None:
        from tessera.core.errors import UserError

        raise UserError("tessera eval: give a run folder, final/ folder or checkpoint file")
    from safetensors.torch import load_file

    from tessera.config import load_config
    from tessera.config.build import build_data, build_model
    from tessera.core import checkpoint as checkpoints
    from tessera.core.errors import CheckpointError, ConfigError
    from tessera.core.trainer import Trainer

    run_config, weights = _locate(Path(args.checkpoint))
    recipe = Path(args.recipe) if args.recipe else run_config
    if recipe is None or not recipe.exists():
        raise ConfigError(f"no recipe found for {args.checkpoint}; pass --recipe RECIPE.yaml")
    config = load_config(recipe, args.overrides)
    model = build_model(config)
    network = model.network()
    if weights.suffix == ".safetensors":
        state = load_file(str(weights))
        missing, unexpected = network.load_state_dict(state, strict=False)
        tied = set(model.export_config().get("tied_weights", {}))
        if unexpected or set(missing) - tied:
            raise CheckpointError(
                f"{weights} does not fit the recipe's model: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}"
            )
    else:
        state = checkpoints.load(weights)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise CheckpointError(
                f"{weights} does not fit the recipe's model: {str(error).splitlines()[0]}"
            ) from None
    data = build_data(config)
    trainer = Trainer(
        model,
        data.train,
        "1ba",
        optimizers=_no_op_optimizer(model),
        eval_dataloaders=data.eval,
        device=config.device,
        precision=config.precision,
        seed=config.seed,
    )
    results = trainer.evaluate()
    print(json.dumps({"checkpoint": str(weights), "eval": results}))
    return 0


def _no_op_optimizer(model):  # evaluation never steps; the trainer still wants one
    import torch

    return torch.optim.SGD(model.parameters(), lr=0.0)
