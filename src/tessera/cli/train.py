"""`tessera train RECIPE.yaml [key=value ...]`: run a recipe; run it again to resume."""

from __future__ import annotations

import argparse
import json
import time


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train from a recipe (run the same command again to resume)",
        description="Train from a recipe. Overrides are key=value or dotted "
        "(max_duration=2ep model.width=32). A run folder runs/<name>/ receives the resolved "
        "config, metrics.jsonl, checkpoints and the final model.",
    )
    parser.add_argument("recipe", help="run file (YAML)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tessera.config import load_config
    from tessera.config.build import build_trainer

    config = load_config(args.recipe, args.overrides)
    trainer, folder = build_trainer(config)
    start = time.perf_counter()
    trainer.fit()
    state = trainer.state
    if state.rank == 0:
        trainer.export(folder.final)
        summary = {
            "run": str(folder.root),
            "timestamp": state.timestamp.state_dict(),
            "eval": state.eval_results,
            "seconds": round(time.perf_counter() - start, 1),
            "final_model": str(folder.final),
            "resumed_from": str(trainer.resumed_from) if trainer.resumed_from else None,
            "stop_reason": state.stop_reason,
        }
        print(json.dumps(summary))
        if trainer.engine.profile:
            for event, hook, seconds, calls in trainer.engine.timing_report():
                print(f"{seconds:9.3f}s {calls:7d}x  {event:<22} {hook}")
    return 0
