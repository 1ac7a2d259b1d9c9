"""`tessera provenance PATH`: which data trained a model, or what a data set is made of."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "provenance",
        help="show which data sets (and how much of each) trained a run, or a data set's sources",
        description="For a run folder or model folder: the data sets it was trained on, with "
        "samples, tokens, licences and each data set's processing steps back to its raw "
        "sources (from final/provenance.json, or the newest checkpoint of an unfinished run). "
        "For a data set folder written by Tessera: its manifest. See docs/provenance.md.",
    )
    parser.add_argument("path", help="run folder, model folder, or data set folder/URL")
    parser.add_argument("--json", action="store_true", help="print the record as JSON")
    parser.add_argument("--storage-options", default=None, metavar="JSON", help="fsspec options")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tessera.core.errors import UserError
    from tessera.data.provenance import describe, read_manifest
    from tessera.data.storage import is_remote
    from tessera.data.training_provenance import run_provenance

    record = None if is_remote(args.path) else run_provenance(args.path)
    if record is None:
        options = json.loads(args.storage_options) if args.storage_options else None
        if is_remote(args.path) or Path(args.path).exists():
            record = read_manifest(args.path, options)
        if record is None:
            raise UserError(
                f"{args.path!r} has no provenance: no final/provenance.json, no checkpoint with "
                "a provenance record (train with `callbacks: {provenance: {}}`), and no data set "
                "manifest."
            )
    if args.json:
        print(json.dumps(record, indent=1))
        return 0
    if record["kind"] == "training":
        totals = record["totals"]
        where = f" (checkpoint {record['checkpoint']})" if record.get("checkpoint") else ""
        print(
            f"run {record.get('run')}{where}: {totals['samples']:,} samples, "
            f"{totals['tokens']:,} tokens in {totals['batches']:,} batches"
        )
        print(f"licences: {', '.join(record['licenses']) or 'none recorded'}")
        for source in record["sources"]:
            print(f"- {source['path']}: {source['samples']:,} samples, {source['tokens']:,} tokens")
            for line in describe(source["manifest"], "    "):
                print(line)
        return 0
    for line in describe(record):
        print(line)
    return 0
