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
    parser.add_argument("--preset", default=None, help="a GPT preset (e.g. gpt-125m) instead")
    parser.add_argument("--bf16", action="store_true", help="bf16 weights (GPU)")
    parser.add_argument("--profile", action="store_true", help="print the top operators")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape = {"n_layer": args.layers, "n_head": args.heads, "d_model": args.width}
    if args.preset:
        shape = {"preset": args.preset}
    config = GPTConfig(vocab_size=args.vocab, max_seq_len=16 + args.new, **shape)
    torch.manual_seed(0)
    model = GPT(config).to(device).eval()
    if args.bf16:
        model = model.to(torch.bfloat16)
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
    if args.profile:
        profile(model, device, args.vocab)
    print(
        f"\n{platform.processor() or platform.machine()}, {device}, torch {torch.__version__}, "
        f"{config.num_parameters():,} parameters, {args.new} new tokens after 16"
    )
    print("| batch | KV cache | tokens/s |\n| --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['batch']} | {'yes' if row['kv_cache'] else 'no'} | {row['tokens_per_s']:,} |"
        )


def profile(model: GPT, device: str, vocab: int) -> None:
    """Where the time of 32 cached greedy tokens at batch 1 goes, by operator."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    prompts = [torch.randint(0, vocab, (16,)).tolist()]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        generate_ids(model, prompts, Sampling(max_new_tokens=32, temperature=0.0))
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    print(prof.key_averages().table(sort_by=key, row_limit=8))


if __name__ == "__main__":
    main()
