"""`tessera data convert` and `tessera data inspect`.

Other modules add more `data` sub-commands through `data_subparsers(subparsers)`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from tessera.cli.options import parsed_by
from tessera.core.errors import UserError

SOURCE_KINDS = ("images", "jsonl", "csv", "text", "fashion-mnist")


def data_subparsers(subparsers: Any) -> Any:
    """The sub-parsers object of the `data` command, created on first call."""
    parser = subparsers.choices.get("data")
    if parser is None:
        parser = subparsers.add_parser(
            "data", help="convert, inspect and prepare training data sets"
        )
        parser.set_defaults(func=lambda args: _print_help(parser))
        parser.tessera_subcommands = parser.add_subparsers(
            dest="data_command", metavar="SUBCOMMAND"
        )
    return parser.tessera_subcommands


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def add_parser(subparsers: Any) -> None:
    commands = data_subparsers(subparsers)
    convert = commands.add_parser(
        "convert",
        help="convert images, JSONL, CSV, text files or Fashion-MNIST to streaming shards",
        description="Write a source as Tessera shards plus index.json (docs/data/format.md).",
    )
    convert.add_argument("kind", choices=SOURCE_KINDS, help="what the source is")
    convert.add_argument("source", help="input file or folder (fashion-mnist: also the name)")
    convert.add_argument("out", help="output folder or URL (s3://bucket/path, gs://...)")
    convert.add_argument(
        "--compression",
        type=parsed_by("tessera.data.writer:parse_compression"),
        default="zstd",
        help="zstd, zstd:<level> (1-22) or none",
    )
    convert.add_argument(
        "--shard-size",
        type=parsed_by("tessera.data.convert:parse_shard_size"),
        default="auto",
        help="max uncompressed shard size (default auto: about 64 shards, 256 KiB to 64 MiB each)",
    )
    convert.add_argument("--split", default="train", help="Fashion-MNIST split: train or test")
    convert.add_argument(
        "--image-format", default="png", help="Fashion-MNIST images: png or raw (uint8 arrays)"
    )
    convert.add_argument("--overwrite", action="store_true", help="replace an existing data set")
    convert.add_argument("--license", default=None, help="licence of the data (manifest)")
    convert.add_argument("--tag", action="append", default=[], help="tag for the manifest")
    _storage_argument(convert)
    convert.set_defaults(func=run_convert)

    inspect = commands.add_parser(
        "inspect",
        help="summarize a shard data set and verify its checksums",
        description="Print the index summary; with --verify, download and check every shard.",
    )
    inspect.add_argument("location", help="data set folder or URL")
    inspect.add_argument("--verify", action="store_true", help="check every shard's checksums")
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    _storage_argument(inspect)
    inspect.set_defaults(func=run_inspect)


def _storage_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage-options",
        default=None,
        metavar="JSON",
        help='fsspec options for remote storage, e.g. \'{"client_kwargs": {"endpoint_url": '
        '"http://127.0.0.1:9000"}}\' (credentials also come from the usual environment variables)',
    )


def _storage_options(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.storage_options is None:
        return None
    try:
        options = json.loads(args.storage_options)
    except json.JSONDecodeError as error:
        raise UserError(f"--storage-options is not valid JSON ({error}).") from None
    if not isinstance(options, dict):
        raise UserError("--storage-options must be a JSON object, e.g. '{\"anon\": true}'.")
    return options


def run_convert(args: argparse.Namespace) -> int:
    from tessera.data.convert import convert
    from tessera.data.provenance import write_converted_manifest

    options: dict[str, Any] = {}
    if args.kind == "fashion-mnist":
        options = {"split": args.split, "image_format": args.image_format}
    compression = None if args.compression in ("none", "") else args.compression
    index = convert(
        args.kind,
        args.source,
        args.out,
        compression=compression,
        shard_size=args.shard_size,
        overwrite=args.overwrite,
        storage_options=_storage_options(args),
        **options,
    )
    settings = {"kind": args.kind, "compression": compression, "shard_size": args.shard_size}
    write_converted_manifest(
        args.out,
        args.source,
        {**settings, **options},
        index,
        args.license,
        args.tag,
        _storage_options(args),
    )
    print(f"wrote {index['num_samples']:,} samples in {len(index['shards'])} shards to {args.out}")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tessera.data.verify import summarize, verify

    storage_options = _storage_options(args)
    summary = summarize(args.location, storage_options)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        table = Table(title=f"data set {summary['location']}", show_header=False)
        for key, value in summary.items():
            if key != "location":
                table.add_row(key.replace("_", " "), _show(value))
        Console().print(table)
    if not args.verify:
        return 0
    problems = verify(args.location, storage_options)
    if problems:
        raise UserError(
            f"{len(problems)} problem(s) in {args.location}: " + "; ".join(problems[:20])
        )
    print(f"verified {summary['shards']} shards: all checksums match")
    return 0


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
