"""The `tessera` command: one sub-command per module, each adding its own parser.

Exit codes: 0 success, 2 bad input (a `UserError`: printed as one paragraph, no traceback),
1 any other failure.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Sequence

from tessera import __version__
from tessera.core.errors import UserError

# Each module exposes `add_parser(subparsers)`; heavy imports stay inside the handlers.
COMMAND_MODULES = [
    "tessera.cli.train",
    "tessera.cli.evaluate",
    "tessera.cli.config_show",
    "tessera.cli.consolidate",
    "tessera.cli.data",
    "tessera.cli.data_text",
    "tessera.cli.data_clean",
    "tessera.cli.data_download",
    "tessera.cli.provenance",
    "tessera.cli.generate",
    "tessera.cli.export",
    "tessera.cli.estimate",
    "tessera.cli.plot",
    "tessera.cli.serve",
    "tessera.cli.chat",
    "tessera.cli.launch",
    "tessera.cli.runs",
    "tessera.cli.dashboard",
]


@functools.cache
def build_parser() -> argparse.ArgumentParser:
    """The whole command tree, built once per process (a program calling `main` repeatedly
    does not rebuild its hundreds of options each time)."""
    parser = argparse.ArgumentParser(
        prog="tessera",
        description="Train neural networks faster and cheaper, and own the result.",
    )
    parser.add_argument("--version", action="version", version=f"tessera {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse printed its usage line and the refused option
        return stop.code if isinstance(stop.code, int) else 2
    handler = getattr(args, "func", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except SystemExit as stop:  # a sub-command's own parser refused an option
        return stop.code if isinstance(stop.code, int) else 2
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
