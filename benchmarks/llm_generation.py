"""Generation speed: new tokens per second at batch 1 and 32, with and without the KV cache.

Greedy decoding of `--new` tokens after a 16-token prompt, on a randomly initialised GPT of the
given shape (speed does not depend on the weights). Each setting runs once after a short
warm-up; the machine and torch version are printed with the table.

    python benchmarks/llm_generation.py [--layers 4 --width 128 --heads 4 --new 200]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from tessera.models.gpt import GPT, GPTConfig
from tessera.serve.generate import Sampling, generate_ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=65)
    parser.add_argument("--new", type=int, default=200)
    parser.add_argument("--batches", default="1,32")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = GPTConfig(
        vocab_size=args.vocab,
        max_seq_len=16 + args.new,
        n_layer=args.layers,
        n_head=args.heads,
        d_model=args.width,
    )
    torch.manual_seed(0)
    model = GPT(config).to(device).eval()
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        prompts = [torch.randint(0, args.vocab, (16,)).tolist() for _ in range(batch)]
        for cache in (True, False):
            generate_ids(
                model, prompts, Sampling(max_new_tokens=4, temperature=0.0), use_cache=cache
            )
            start = time.perf_counter()
            out = generate_ids(
                model, prompts, Sampling(max_new_tokens=args.new, temperature=0.0), use_cache=cache
            )
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            tokens = sum(len(row) for row in out)
            rows.append(
                {"batch": batch, "kv_cache": cache, "tokens_per_s": round(tokens / seconds, 1)}
            )
            print(json.dumps(rows[-1]), flush=True)
    print(
        f"\n{platform.processor() or platform.machine()}, {device}, torch {torch.__version__}, "
        f"{config.num_parameters():,} parameters, {args.new} new tokens after 16"
    )
    print("| batch | KV cache | tokens/s |\n| --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['batch']} | {'yes' if row['kv_cache'] else 'no'} | {row['tokens_per_s']:,} |"
        )


if __name__ == "__main__":
    main()
