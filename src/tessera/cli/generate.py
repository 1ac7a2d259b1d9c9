"""`tessera generate CHECKPOINT --prompt TEXT` (or `--input prompts.jsonl --output out.jsonl`):
sample text from a trained language model with the serving engine, in this process."""

from __future__ import annotations

import argparse

from tessera.cli.options import COUNT, SEED, SHARE, TEMPERATURE
from tessera.cli.serve import add_engine_options


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate text from a trained language model",
        description="Generate text from an exported GPT (a run folder, or its final/ folder) with "
        "the same engine as `tessera serve`. Temperature 0 (or --greedy) picks the most likely "
        "token. With --input, every line of a JSONL file is a request ({'prompt': ...} or "
        "{'messages': [...]}, with optional per-line options) and --output receives one result "
        "line per request, in order.",
    )
    parser.add_argument("checkpoint", nargs="?", help="run folder or folder with model.safetensors")
    parser.add_argument("--prompt", action="append", help="prompt text (repeat for a batch)")
    parser.add_argument("--input", default=None, help="JSONL file of requests (batch mode)")
    parser.add_argument("--output", default=None, help="JSONL file to write (batch mode)")
    parser.add_argument("--max-new-tokens", type=COUNT, default=200, help="tokens to add")
    parser.add_argument("--temperature", type=TEMPERATURE, default=0.8, help="0 = greedy")
    parser.add_argument("--greedy", action="store_true", help="same as --temperature 0")
    parser.add_argument("--top-k", type=COUNT, default=None, help="sample among the k best")
    parser.add_argument("--top-p", type=SHARE, default=None, help="nucleus sampling mass")
    parser.add_argument("--stop", action="append", default=[], help="stop at this text")
    parser.add_argument("--num-samples", type=COUNT, default=1, help="samples per prompt")
    parser.add_argument("--seed", type=SEED, default=None, help="seed for sampling")
    parser.add_argument(
        "--no-cache", action="store_true", help="recompute (no KV cache, no engine)"
    )
    add_engine_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tessera.core.errors import UserError
    from tessera.serve.generate import Sampling, generate_text
    from tessera.serve.loading import load_model

    if args.num_samples < 1:
        raise UserError(f"--num-samples must be >= 1, got {args.num_samples}.")
    if (args.input is None) != (args.output is None):
        raise UserError("batch mode needs both --input FILE.jsonl and --output FILE.jsonl.")
    if args.input is not None and args.prompt:
        raise UserError("give either --prompt or --input, not both.")
    model, folder = load_model(args.checkpoint, args.hf, args.device, args.dtype)
    temperature = 0.0 if args.greedy else args.temperature
    if args.input is not None:
        return _batch(args, model, folder, temperature)
    prompts = args.prompt or ["\n"]
    sampling = Sampling(
        max_new_tokens=args.max_new_tokens,
        temperature=temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        stop=args.stop,
        seed=args.seed,
    )
    batch = [p for p in prompts for _ in range(args.num_samples)]
    engine = None
    if not args.no_cache:
        from tessera.cli.serve import engine_config
        from tessera.serve.engine import Engine

        config = engine_config(args, max_queue=1 << 30)
        config.max_batch = min(config.max_batch, len(batch))
        engine = Engine(model, model.tokenizer, config)
    texts = generate_text(model, model.tokenizer, batch, sampling, not args.no_cache, engine)
    for prompt, text in zip(batch, texts):
        print(prompt + text)
        print("-" * 40)
    return 0


def _batch(args: argparse.Namespace, model: object, folder: object, temperature: float) -> int:
    import time

    from tessera.cli.serve import chat_template, engine_config
    from tessera.serve.batch import read_batch, run_batch
    from tessera.serve.engine import Engine

    engine = Engine(model, model.tokenizer, engine_config(args, max_queue=1 << 30))
    defaults = {
        "max_tokens": args.max_new_tokens,
        "temperature": temperature,
        "top_k": args.top_k,
        "top_p": args.top_p if args.top_p is not None else 1.0,
        "stop": args.stop or None,
        "seed": args.seed,
        "n": args.num_samples,
    }
    items = read_batch(args.input, engine, chat_template(args, folder), defaults)
    started = time.perf_counter()
    written = run_batch(engine, items, args.output)
    seconds = time.perf_counter() - started
    print(f"wrote {written} results to {args.output} in {seconds:.1f} s")
    return 0
