"""`tessera data clean INPUT... --out OUT`: deduplicate, filter and redact a text corpus."""

from __future__ import annotations

import argparse
from typing import Any

from tessera.cli.options import Number


def add_parser(subparsers: Any) -> None:
    from tessera.cli.data import _storage_argument, data_subparsers

    commands = data_subparsers(subparsers)
    parser = commands.add_parser(
        "clean",
        help="deduplicate (exact and near), quality-filter and redact personal data in text",
        description="Read text, JSONL or Parquet files (folders, globs, gzip/zstd, local or "
        "remote), remove exact and near duplicates, apply quality filters, find personal data, "
        "and write OUT/part-*.jsonl.zst with report.md, report.json and provenance.json. "
        "Run the same command again to resume an interrupted clean. See docs/data/clean.md.",
    )
    parser.add_argument("inputs", nargs="+", help="files, folders, globs or URLs")
    parser.add_argument("--out", required=True, help="output folder or URL")
    parser.add_argument(
        "--dedup",
        default=None,
        help="comma list of exact, near, line, paragraph, or none (default exact,near)",
    )
    parser.add_argument(
        "--quality", default=None, help="filter preset: default, gopher, c4 or none"
    )
    parser.add_argument(
        "--pii", choices=["off", "count", "redact", "remove"], default=None, help="personal data"
    )
    parser.add_argument(
        "--threshold", type=Number(float, gt=0, lt=1), default=None, help="near-duplicate Jaccard"
    )
    parser.add_argument(
        "--workers", type=Number(int, ge=1, le=1024), default=None, help="worker processes"
    )
    parser.add_argument("--format", choices=["auto", "text", "jsonl", "parquet"], default=None)
    parser.add_argument("--text-field", default=None, help="JSONL/Parquet field (default text)")
    parser.add_argument(
        "--text-unit",
        choices=["file", "paragraph", "line"],
        default=None,
        help="plain text: a document per file (default), paragraph or line",
    )
    parser.add_argument("--compression", choices=["zstd", "gzip", "none"], default=None)
    parser.add_argument("--license", default=None, help="licence of the data (manifest)")
    parser.add_argument("--tag", action="append", default=None, help="tag for the manifest")
    parser.add_argument("--config", default=None, help="YAML file with the clean settings")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. near.num_perm=256 or quality.gopher_length.min_words=20",
    )
    parser.add_argument("--report", default=None, help="also write the markdown report here")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished clean")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    _storage_argument(parser)
    parser.set_defaults(func=run_clean)


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The settings: the --config file, then the flags given, then --set overrides."""
    from tessera.config.run_file import apply_overrides, load_yaml
    from tessera.core.errors import ConfigError

    settings: dict[str, Any] = load_yaml(args.config) if args.config else {}
    if args.dedup is not None:
        chosen = {part.strip() for part in args.dedup.split(",") if part.strip()}
        unknown = chosen - {"exact", "near", "line", "paragraph", "none"}
        if unknown or ("line" in chosen and "paragraph" in chosen):
            raise ConfigError(
                f"--dedup {args.dedup!r}: give a comma list of exact, near and one of "
                "line/paragraph, or none."
            )
        segments = "line" if "line" in chosen else "paragraph" if "paragraph" in chosen else "none"
        settings["dedup"] = {
            **settings.get("dedup", {}),
            "exact": "exact" in chosen,
            "near": "near" in chosen,
            "segments": segments,
        }
    flags = {
        "quality.preset": args.quality,
        "pii.mode": args.pii,
        "near.threshold": args.threshold,
        "workers": args.workers,
        "reader.format": args.format,
        "reader.text_field": args.text_field,
        "reader.text_unit": args.text_unit,
        "output.compression": args.compression,
        "license": args.license,
    }
    for key, value in flags.items():
        if value is not None:
            section, _, name = key.rpartition(".")
            target = settings.setdefault(section, {}) if section else settings
            if not isinstance(target, dict):
                raise ConfigError(f"{section}: expected a mapping of settings")
            target[name] = value
    if args.tag:
        settings["tags"] = [*settings.get("tags", []), *args.tag]
    return apply_overrides(settings, args.set)


def run_clean(args: argparse.Namespace) -> int:
    from tessera.cli.data import _storage_options
    from tessera.data.clean.config import parse_config
    from tessera.data.clean.pipeline import clean
    from tessera.data.clean.report import markdown
    from tessera.data.storage import write_atomic

    config = parse_config(settings_from_args(args), "tessera data clean")
    report = clean(
        args.inputs,
        args.out,
        config,
        overwrite=args.overwrite,
        storage_options=_storage_options(args),
        progress=not args.no_progress,
    )
    if args.report:
        write_atomic(args.report, markdown(report, args.out).encode("utf-8"))
    inputs, output = report["inputs"], report["output"]
    if inputs["undecodable_bytes"]:
        first = inputs["undecodable"][0]
        print(
            f"warning: skipped {inputs['undecodable_bytes']:,} bytes that are not UTF-8 in "
            f"{len(inputs['undecodable'])} file(s), first in {first['file']} at byte offset "
            f"{first['offsets'][0]} (all listed in report.json)"
        )
    removed = ", ".join(f"{reason} {v['documents']:,}" for reason, v in report["removed"].items())
    print(
        f"{inputs['documents']:,} documents in, {output['documents']:,} out "
        f"({removed or 'none removed'}); written to {args.out} in {report['seconds']} s"
    )
    return 0
