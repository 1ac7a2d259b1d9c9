"""FP8 against bf16 over a few hundred steps: tokens/s and the loss curve of the same run.

The 350M GPT-2 shape (d 1024, the linear layers FP8 converts) on tinyshakespeare as bytes,
sequence 1024, batch 16, 300 steps (--steps) of AdamW with warm-up and cosine decay; once in
bf16 autocast, once with the `float8` method (torchao, tensorwise scaling) on top, same seed,
same batches. Reports tokens/s of each (after 10 warm-up steps) and the relative difference of
the mean loss over the last 50 steps (the issue's target: within 1%). fp8_loss.json and
fp8_loss.md are written after each run.

    python benchmarks/gpu_llm_fp8_loss.py --text .peers/input.txt --out results/   # ~2 min
    python benchmarks/gpu_llm_fp8_loss.py --smoke --text ../shared/data/tinyshakespeare/input.txt
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_llm_mfu import DEVICE, environment, fp8_available, reset_memory, save_results, sync

from tessera.models.gpt import GPT, GPTConfig


def batches(text: Path, seq: int, batch: int, steps: int, seed: int = 0) -> torch.Tensor:
    data = torch.frombuffer(bytearray(text.read_bytes()), dtype=torch.uint8).long()
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, data.numel() - seq - 1, (steps, batch), generator=generator)
    return torch.stack([torch.stack([data[s : s + seq + 1] for s in row]) for row in starts])


def train(rows: torch.Tensor, fp8: bool, smoke: bool) -> dict:
    seq = rows.shape[-1] - 1
    if smoke:
        config = GPTConfig(n_layer=1, n_head=2, d_model=64, vocab_size=320, max_seq_len=seq)
    else:
        config = GPTConfig(preset="gpt-350m", vocab_size=320, max_seq_len=seq)
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = GPT(config)
    if fp8:
        from tessera.algorithms.float8 import convert_to_float8

        convert_to_float8(model)
    if DEVICE == "cuda":
        for block in model.blocks:
            block.compile()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=3e-4, betas=(0.9, 0.95), fused=DEVICE == "cuda"
    )
    steps = rows.shape[0]
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            (s + 1) / warmup
            if s < warmup
            else 0.5 * (1 + math.cos(math.pi * (s - warmup) / (steps - warmup)))
        ),
    )
    losses = []
    reset_memory()
    start = None
    warm = min(10, steps // 2)  # compile and warm-up steps, not timed
    for step in range(steps):
        if step == warm:
            sync()
            start = time.perf_counter()
        batch = {"input_ids": rows[step].to(DEVICE)}
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            loss = model.loss(model(batch), batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    sync()
    seconds = time.perf_counter() - start if start else float("nan")
    curve = [float(x) for x in torch.stack(losses).cpu()]
    tail = curve[-min(50, len(curve)) :]
    return {
        "method": "fp8" if fp8 else "bf16",
        "tokens_per_s": round((steps - warm) * rows.shape[1] * seq / seconds) if start else None,
        "final_loss": round(sum(tail) / len(tail), 4),
        "curve_every_10": [round(x, 4) for x in curve[::10]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--text", required=True, help="a text file (tinyshakespeare's input.txt)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    seq, batch, steps = (32, 2, 6) if args.smoke else (1024, 16, args.steps)
    info = environment()
    print(json.dumps(info), flush=True)
    rows = batches(Path(args.text), seq, batch, steps)
    results = [train(rows, fp8=False, smoke=args.smoke)]
    print(json.dumps(results[-1]), flush=True)
    save_results(args.out, "fp8_loss", {"info": info, "runs": results}, table(results))
    reason = fp8_available()
    if reason:
        results.append({"method": "fp8", "skipped": reason})
    else:
        results.append(train(rows, fp8=True, smoke=args.smoke))
        difference = results[1]["final_loss"] / results[0]["final_loss"] - 1
        results[1]["loss_vs_bf16"] = round(difference, 4)
    print(json.dumps(results[-1]), flush=True)
    save_results(args.out, "fp8_loss", {"info": info, "runs": results}, table(results))
    print("\n" + table(results))


def table(results: list[dict]) -> str:
    lines = [
        "| method | tokens/s | mean loss, last 50 steps | vs bf16 |",
        "| --- | --- | --- | --- |",
    ]
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['method']} | skipped: {r['skipped']} | | |")
            continue
        versus = f"{100 * r['loss_vs_bf16']:+.2f}%" if "loss_vs_bf16" in r else ""
        tokens = f"{r['tokens_per_s']:,}" if r["tokens_per_s"] else "n/a"
        lines.append(f"| {r['method']} | {tokens} | {r['final_loss']} | {versus} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
