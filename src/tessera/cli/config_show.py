"""`tessera config show RECIPE [key=value ...]`: print the resolved configuration."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="inspect run configurations")
    commands = parser.add_subparsers(dest="config_command", metavar="COMMAND")
    show = commands.add_parser(
        "show", help="print a recipe with overrides applied and every default filled in"
    )
    show.add_argument("recipe", help="run file (YAML)")
    show.add_argument("overrides", nargs="*", help="key=value overrides")
    show.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from tessera.config import load_config

    config = load_config(args.recipe, args.overrides)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    print(yaml.dump(config.model_dump(mode="json"), Dumper=dumper, sort_keys=False), end="")
    return 0
