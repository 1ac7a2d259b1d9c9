"""`tessera data tokenize` and `tessera data tokenizer train`: from raw text to token files."""

from __future__ import annotations

import argparse
from typing import Any

from tessera.cli.options import COUNT, SEED, Number


def add_parser(subparsers: Any) -> None:
    from tessera.cli.data import data_subparsers

    commands = data_subparsers(subparsers)
    tokenize = commands.add_parser(
        "tokenize",
        help="turn text/JSONL into packed token sequences with a train/val split",
        description="Tokenize text files (one document each, or one per line with --lines) or "
        "JSONL (a text field, prompt/response pairs, or chat messages) into OUT/train.* and "
        "OUT/val.* token files plus OUT/tokenizer.json.",
    )
    tokenize.add_argument(
        "inputs",
        nargs="+",
        help="text or .jsonl(.zst/.gz) files, a folder (a clean's output), or a bundled data "
        "set's name (tinyshakespeare)",
    )
    tokenize.add_argument("--out", required=True, help="output folder")
    tokenize.add_argument(
        "--tokenizer",
        required=True,
        help="tokenizer JSON file, 'byte', or 'char' (learn the characters of the inputs)",
    )
    tokenize.add_argument("--seq-len", type=COUNT, required=True, help="tokens per sequence")
    tokenize.add_argument(
        "--mode", choices=["concat", "pad"], default="concat", help="pack documents or pad each"
    )
    tokenize.add_argument(
        "--val-fraction", type=Number(float, ge=0, lt=1), default=0.1, help="held-out share"
    )
    tokenize.add_argument("--text-field", default="text", help="JSONL field with the text")
    tokenize.add_argument("--prompt-field", default=None, help="JSONL field of prompts (no loss)")
    tokenize.add_argument("--response-field", default=None, help="JSONL field of responses")
    tokenize.add_argument("--lines", action="store_true", help="each text line is a document")
    tokenize.add_argument("--seed", type=SEED, default=0, help="seed of the train/val split")
    tokenize.add_argument(
        "--format",
        choices=["tokens", "shards"],
        default="tokens",
        help="memory-mapped token files, or streaming shards (OUT/train/, OUT/val/)",
    )
    tokenize.add_argument("--license", default=None, help="licence of the data (manifest)")
    tokenize.add_argument("--tag", action="append", default=[], help="tag for the manifest")
    tokenize.set_defaults(func=run_tokenize)

    tokenizer = commands.add_parser("tokenizer", help="train tokenizers")
    actions = tokenizer.add_subparsers(dest="tokenizer_command", metavar="ACTION")
    tokenizer.set_defaults(func=lambda args: (tokenizer.print_help(), 2)[1])
    train = actions.add_parser(
        "train",
        help="learn a tokenizer from text files",
        description="Learn a byte-level BPE (needs the 'tokenizers' extra) or character "
        "tokenizer from text files and save it as JSON.",
    )
    train.add_argument("inputs", nargs="+", help="text files")
    train.add_argument("--out", required=True, help="tokenizer JSON file to write")
    train.add_argument("--kind", choices=["bpe", "char"], default="bpe")
    train.add_argument("--vocab-size", type=COUNT, default=8192, help="BPE vocabulary size")
    train.add_argument("--min-frequency", type=COUNT, default=2, help="BPE: rarest merge kept")
    train.set_defaults(func=run_tokenizer_train)


def run_tokenize(args: argparse.Namespace) -> int:
    from tessera.data.provenance import dataset_files, write_tokenized_manifest
    from tessera.data.root import resolve
    from tessera.data.text.documents import read_documents
    from tessera.data.text.packing import tokenize_to_folder
    from tessera.data.text.tokenizers import CharTokenizer, load_tokenizer

    named = [resolve(spec, "inputs", others=True) for spec in args.inputs]  # `tinyshakespeare`
    files, sources = dataset_files(named)

    def documents() -> Any:
        return read_documents(
            files,
            args.text_field,
            lines=args.lines,
            prompt_field=args.prompt_field,
            response_field=args.response_field,
        )

    if args.tokenizer == "char":
        tokenizer = CharTokenizer.train(
            (d.prompt + d.text for d in documents()), eos=args.mode == "pad" or len(files) > 1
        )
    else:
        tokenizer = load_tokenizer(args.tokenizer)
    summary = tokenize_to_folder(
        documents(),
        tokenizer,
        args.out,
        seq_len=args.seq_len,
        mode=args.mode,
        val_fraction=args.val_fraction,
        seed=args.seed,
        progress=True,
        shards=args.format == "shards",
    )
    recorded = ("tokenizer", "seq_len", "mode", "val_fraction", "seed", "format", "text_field")
    settings = {key: getattr(args, key) for key in (*recorded, "prompt_field", "response_field")}
    settings["vocab_size"] = tokenizer.vocab_size
    write_tokenized_manifest(args.out, sources, settings, summary, args.license, args.tag)
    for split, numbers in summary.items():
        details = ", ".join(f"{key} {value:,}" for key, value in numbers.items())
        print(f"{split}: {details}")
    print(f"vocabulary {tokenizer.vocab_size}; written to {args.out}")
    return 0


def run_tokenizer_train(args: argparse.Namespace) -> int:
    from tessera.core.errors import UserError
    from tessera.data.text.documents import read_documents
    from tessera.data.text.tokenizers import BPETokenizer, CharTokenizer

    if args.kind == "char":
        tokenizer = CharTokenizer.train((d.text for d in read_documents(args.inputs)), eos=True)
    else:
        if args.vocab_size < 257:
            raise UserError(
                f"--vocab-size must be at least 257 for byte-level BPE, got {args.vocab_size}."
            )
        tokenizer = BPETokenizer.train(args.inputs, args.vocab_size, args.min_frequency)
    tokenizer.save(args.out)
    print(f"{args.kind} tokenizer with {tokenizer.vocab_size} tokens written to {args.out}")
    return 0
