"""`tessera generate CHECKPOINT --prompt TEXT`: sample text from a trained language model."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate text from a trained language model",
        description="Generate text from an exported GPT (a run folder, or its final/ folder). "
        "Decoding uses a KV cache; temperature 0 (or --greedy) picks the most likely token.",
    )
    parser.add_argument("checkpoint", help="run folder or folder with model.safetensors")
    parser.add_argument("--prompt", action="append", help="prompt text (repeat for a batch)")
    parser.add_argument("--max-new-tokens", type=int, default=200, help="tokens to add")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument("--greedy", action="store_true", help="same as --temperature 0")
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k best")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass")
    parser.add_argument("--stop", action="append", default=[], help="stop at this text")
    parser.add_argument("--num-samples", type=int, default=1, help="samples per prompt")
    parser.add_argument("--seed", type=int, default=None, help="seed for sampling")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: best found)")
    parser.add_argument("--no-cache", action="store_true", help="recompute (no KV cache)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from tessera.core.errors import UserError
    from tessera.models.gpt.checkpoint import load_gpt
    from tessera.serve.generate import Sampling, generate_text

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_gpt(args.checkpoint, device=device)
    if model.tokenizer is None:
        raise UserError(f"{args.checkpoint}: the model was saved without a tokenizer.")
    if args.num_samples < 1:
        raise UserError(f"--num-samples must be >= 1, got {args.num_samples}.")
    prompts = args.prompt or ["\n"]
    sampling = Sampling(
        max_new_tokens=args.max_new_tokens,
        temperature=0.0 if args.greedy else args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        stop=args.stop,
        seed=args.seed,
    )
    batch = [p for p in prompts for _ in range(args.num_samples)]
    texts = generate_text(model, model.tokenizer, batch, sampling, use_cache=not args.no_cache)
    for prompt, text in zip(batch, texts):
        print(prompt + text)
        print("-" * 40)
    return 0
