"""`tessera data download NAME|all` and `tessera data list`: the bundled data sets in the
data root (docs/data/datasets.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(subparsers: Any) -> None:
    from tessera.cli.data import data_subparsers

    commands = data_subparsers(subparsers)
    download = commands.add_parser(
        "download",
        help="download Fashion-MNIST, tinyshakespeare and the evaluation sets (sha256-checked)",
        description="Fetch bundled data sets from their publishers into the data root "
        "($TESSERA_DATA_DIR, default ~/.tessera/data), check each file's sha256, and resume "
        "an interrupted download. Names: fashion-mnist, tinyshakespeare, eval, or all.",
    )
    download.add_argument("names", nargs="+", metavar="NAME", help="data set names, or all")
    download.add_argument("--root", default=None, help="download here instead of the data root")
    download.add_argument(
        "--mirror",
        default=None,
        metavar="URL",
        help="fetch MIRROR/NAME/FILE instead of the publishers' URLs (also $TESSERA_DATA_MIRROR)",
    )
    download.add_argument(
        "--force", action="store_true", help="replace files whose sha256 is not the published one"
    )
    download.set_defaults(func=run_download)

    listing = commands.add_parser(
        "list",
        help="the bundled data sets: where each is found, its size and source",
        description="List the data sets recipes can name, and where each one is found.",
    )
    listing.set_defaults(func=run_list)


def run_download(args: argparse.Namespace) -> int:
    from tessera.data.download import download

    results = download(args.names, root=args.root, mirror=args.mirror, force=args.force,
                       progress=sys.stderr.isatty())  # fmt: skip
    by_folder: dict[str, list[Any]] = {}
    for result in results:
        by_folder.setdefault(str(result.path.parent), []).append(result)
    for folder, files in by_folder.items():
        counts = {
            o: sum(f.outcome == o for f in files) for o in ("downloaded", "resumed", "present")
        }
        done = ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n)
        size = sum(f.size for f in files) / 1e6
        print(f"{folder}: {len(files)} files, {size:.1f} MB, sha256 verified ({done})")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from tessera.core.errors import DataError
    from tessera.data.catalog import CATALOG
    from tessera.data.root import data_root, find_folder

    print(f"data root: {data_root()} ($TESSERA_DATA_DIR, default ~/.tessera/data)")
    for name, entry in CATALOG.items():
        try:
            where = f"found in {find_folder(name)}"
        except DataError:
            where = f"missing: tessera data download {name}"
        print(f"{name:16} {entry.size / 1e6:6.1f} MB  {where}")
        print(f"{'':16} {entry.title}; from {entry.source}; licence: {entry.license}")
    return 0
