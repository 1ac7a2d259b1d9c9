"""Long sequences on one GPU: tokens/s, MFU and peak memory of the 1.4B Llama-style shape
(recipes/gpt-1b-32k.yaml's model) at 8k, 16k and 32k tokens per sequence.

One sequence per step, bf16 autocast, fused AdamW, per-block compile, RoPE base 500k, the
output layer + cross-entropy 8,192 tokens at a time, and activation checkpointing `selective`
(and `full` at the longest length, the fallback when selective does not fit). FLOPs count the
attention term at the full length (PaLM's convention, as gpu_llm_mfu.py). long.json and long.md
are rewritten after every row, so a run stopped by a time limit keeps what it measured.

    python benchmarks/gpu_llm_long.py --out results/          # one H200: ~2 minutes
    python benchmarks/gpu_llm_long.py --runs 32768:full --out results/
    python benchmarks/gpu_llm_long.py --smoke                 # CPU check of the script
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_llm_mfu import (
    DEVICE,
    PEAK,
    environment,
    peak_memory_gib,
    reset_memory,
    save_results,
    time_steps,
)

from tessera.models.gpt import GPT, GPTConfig
from tessera.parallel.blocks import apply_activation_checkpointing

RUNS = "8192:selective,16384:selective,32768:selective,32768:full"
SMOKE_RUNS = "128:selective,256:full"


def parse_runs(text: str) -> list[tuple[int, str]]:
    """'8192:selective,32768:full' -> [(8192, 'selective'), (32768, 'full')]."""
    runs = []
    for item in filter(None, text.split(",")):
        seq, _, mode = item.partition(":")
        if not seq.isdigit() or mode not in ("selective", "full"):
            raise SystemExit(f"--runs item {item!r}: expected LENGTH:selective or LENGTH:full")
        runs.append((int(seq), mode))
    return runs


def one(seq: int, mode: str, smoke: bool, steps: int, warmup: int) -> dict:
    if smoke:
        config = GPTConfig(
            n_layer=2,
            n_head=2,
            d_model=64,
            vocab_size=256,
            max_seq_len=seq,
            position="rope",
            norm="rmsnorm",
            mlp="swiglu",
            bias=False,
            loss_chunk_tokens=64,
        )
    else:
        config = GPTConfig(
            preset="gpt-1b",
            vocab_size=50304,
            max_seq_len=seq,
            rope_theta=500000.0,
            loss_chunk_tokens=8192,
        )
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = GPT(config)
    apply_activation_checkpointing(model, mode=mode)
    if DEVICE == "cuda":
        for block in model.blocks:
            block.compile()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=DEVICE == "cuda")
    batch = {"input_ids": torch.randint(0, config.vocab_size, (1, seq + 1), device=DEVICE)}

    def step() -> None:
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            loss = model.loss(model(batch), batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    reset_memory()
    seconds = time_steps(step, steps, warmup=warmup)
    tokens = seq / seconds
    row = {
        "seq": seq,
        "checkpointing": mode,
        "params": config.num_parameters(),
        "tokens_per_s": round(tokens),
        "mfu": round(config.flops_per_token(seq) * tokens / PEAK, 4),
        "step_s": round(seconds, 3),
        "peak_memory_gib": peak_memory_gib(),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", default=None, help=f"LENGTH:MODE list (default {RUNS})")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    info = environment()
    print(json.dumps(info), flush=True)
    rows: list[dict] = []
    steps, warmup = (2, 1) if args.smoke else (args.steps, args.warmup)
    for seq, mode in parse_runs(args.runs or (SMOKE_RUNS if args.smoke else RUNS)):
        try:
            rows.append(one(seq, mode, args.smoke, steps, warmup))
        except Exception as error:  # out of memory at one length must not end the run
            rows.append({"seq": seq, "checkpointing": mode, "error": repr(error)[:300]})
            print(json.dumps(rows[-1]), flush=True)
        reset_memory()
        save_results(args.out, "long", {"info": info, "rows": rows}, table(rows))
    print("\n" + table(rows))


def table(rows: list[dict]) -> str:
    lines = [
        "| seq | checkpointing | tokens/s | MFU | step s | peak GiB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['seq']:,} | {r['checkpointing']} | error: {r['error'][:60]} | | | |"
            )
        else:
            lines.append(
                f"| {r['seq']:,} | {r['checkpointing']} | {r['tokens_per_s']:,} | "
                f"{100 * r['mfu']:.1f}% | {r['step_s']} | {r['peak_memory_gib']} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
