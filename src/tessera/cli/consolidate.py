"""`tessera consolidate CHECKPOINT --out FOLDER`: one safetensors model from a sharded (FSDP)
checkpoint, on one machine, without a process group or a GPU."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "consolidate",
        help="merge a sharded (FSDP) checkpoint into one model.safetensors + config.json",
        description="Read the model shards of a sharded checkpoint folder (written by every "
        "rank of an FSDP run, through torch.distributed.checkpoint) and write the whole model "
        "as FOLDER/model.safetensors and FOLDER/config.json, the same files a finished run "
        "exports to runs/<name>/final.",
    )
    parser.add_argument(
        "checkpoint", help="sharded checkpoint folder, e.g. runs/NAME/checkpoints/ep0-ba100"
    )
    parser.add_argument("--out", required=True, help="folder to write the model into")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tessera.parallel.sharded_checkpointer import consolidate

    folder = consolidate(args.checkpoint, args.out)
    print(f"wrote {folder / 'model.safetensors'} and {folder / 'config.json'}")
    return 0
