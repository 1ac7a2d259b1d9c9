"""MFU of GPT pretraining shapes on one GPU: Tessera's GPT vs Hugging Face transformers.

For each size (125M, 350M: GPT-2 style; 1B: Llama style) at sequence 2048: bf16 autocast,
`torch.compile` per block, flash SDPA, fused AdamW; tokens/s over timed steps after warm-up,
MFU = flops_per_token x tokens/s / peak (989 TFLOP/s dense bf16 for H100 SXM). The same shape is
then built as transformers' GPT2LMHeadModel / LlamaForCausalLM (attn_implementation="sdpa"),
compiled per decoder layer the same way, and timed in the same process.

Also times generation (batch 1 and 32, with and without the KV cache) for the 125M shape.

    python benchmarks/gpu_llm_mfu.py [--sizes gpt-125m,gpt-350m,gpt-1b] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tessera.models.gpt import GPT, GPTConfig
from tessera.serve.generate import Sampling, generate_ids

PEAK = 989e12
BATCH = {"gpt-125m": 16, "gpt-350m": 8, "gpt-1b": 8, "smoke": 2}
SEQ = 2048
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SMOKE = {"n_layer": 2, "n_head": 2, "d_model": 64, "max_seq_len": 64, "vocab_size": 256}


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def shape(name: str, seq: int) -> GPTConfig:
    if name == "smoke":  # a CPU check of the script itself
        return GPTConfig(**{**SMOKE, "max_seq_len": seq})
    return GPTConfig(preset=name, vocab_size=50304, max_seq_len=seq)


def hf_model(config: GPTConfig) -> torch.nn.Module:
    import transformers

    from tessera.models.gpt.hf_export import hf_config

    hf = hf_config(config, eos_id=None)
    hf._attn_implementation = "sdpa"
    cls = (
        transformers.GPT2LMHeadModel
        if config.position == "learned"
        else transformers.LlamaForCausalLM
    )
    model = cls(hf)
    layers = model.transformer.h if config.position == "learned" else model.model.layers
    for layer in layers:
        layer.compile()
    return model


def time_training(step_fn, steps: int, warmup: int = 3) -> float:
    """Seconds per step (median of `steps` after `warmup`)."""
    times = []
    for i in range(warmup + steps):
        sync()
        start = time.perf_counter()
        step_fn()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def measure(library: str, name: str, config: GPTConfig, model, loss_of, batch: int, steps: int):
    """Train `model` on `loss_of(model)` with bf16 autocast and fused AdamW; the result row."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=DEVICE == "cuda")

    def step() -> None:
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            loss = loss_of(model)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seq = config.max_seq_len
    tokens = batch * seq / time_training(step, steps)
    row = _row(library, name, config, batch, seq, tokens, config.flops_per_token(seq))
    print(json.dumps(row), flush=True)
    return row


def bench_size(name: str, steps: int, with_hf: bool) -> list[dict]:
    seq = SEQ if name != "smoke" else 64
    config = shape(name, seq)
    batch = BATCH[name]
    torch.manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (batch, seq + 1), device=DEVICE)
    model = GPT(config).to(DEVICE)
    for block in model.blocks:
        block.compile()
    batch_dict = {"input_ids": ids}
    rows = [
        measure(
            "tessera",
            name,
            config,
            model,
            lambda m: m.loss(m(batch_dict), batch_dict),
            batch,
            steps,
        )
    ]
    del model
    reset_memory()
    if with_hf:
        torch.manual_seed(0)
        try:
            model = hf_model(config).to(DEVICE)
        except Exception as error:  # record, keep the rest of the run
            print(json.dumps({"library": "transformers", "size": name, "error": repr(error)}))
            return rows
        inputs = ids[:, :seq]
        rows.append(
            measure(
                "transformers",
                name,
                config,
                model,
                lambda m: m(input_ids=inputs, labels=inputs).loss,
                batch,
                steps,
            )
        )
        del model
        reset_memory()
    return rows


def reset_memory() -> None:
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _row(lib, name, config, batch, seq, tokens, flops_per_token) -> dict:
    memory = torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else 0.0
    return {
        "library": lib,
        "size": name,
        "params": config.num_parameters(),
        "batch": batch,
        "seq": seq,
        "tokens_per_s": round(tokens),
        "mfu": round(flops_per_token * tokens / PEAK, 4),
        "peak_memory_gib": round(memory, 1),
    }


def bench_generation(name: str) -> list[dict]:
    config = shape(name, 1024 if name != "smoke" else 256)
    dtype = torch.bfloat16 if DEVICE == "cuda" else torch.float32
    model = GPT(config).to(DEVICE).to(dtype).eval()
    rows = []
    for batch in (1, 32):
        for cache in (True, False):
            prompts = [torch.randint(0, config.vocab_size, (64,)).tolist() for _ in range(batch)]
            sampling = Sampling(max_new_tokens=128, temperature=0.0)
            warm = Sampling(max_new_tokens=4, temperature=0.0)
            generate_ids(model, prompts, warm, use_cache=cache)
            sync()
            start = time.perf_counter()
            out = generate_ids(model, prompts, sampling, use_cache=cache)
            sync()
            seconds = time.perf_counter() - start
            new = sum(len(row) for row in out)
            rows.append({"batch": batch, "kv_cache": cache, "tokens_per_s": round(new / seconds)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="gpt-125m,gpt-350m,gpt-1b")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--no-hf", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    info = {
        "device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu",
        "torch": torch.__version__,
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    print(json.dumps(info), flush=True)
    rows = []
    for name in args.sizes.split(","):
        rows += bench_size(name, args.steps, not args.no_hf)
    generation = bench_generation("smoke" if args.sizes == "smoke" else "gpt-125m")
    print("\n| library | size | params | batch x seq | tokens/s | MFU | peak GiB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['library']} | {r['size']} | {r['params'] / 1e6:.0f}M | {r['batch']}x{r['seq']} "
            f"| {r['tokens_per_s']:,} | {100 * r['mfu']:.1f}% | {r['peak_memory_gib']} |"
        )
    if args.out:
        Path(args.out).write_text(
            json.dumps({"info": info, "training": rows, "generation": generation}, indent=1)
        )


if __name__ == "__main__":
    main()
