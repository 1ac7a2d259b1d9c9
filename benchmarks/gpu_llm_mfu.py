"""MFU of GPT pretraining shapes on one GPU: Tessera's GPT vs Hugging Face transformers.

For each size (125M, 350M: GPT-2 style; 1B: the Llama-style 1.4B shape) at sequence 2048:
bf16 autocast, `torch.compile` per block, fused AdamW; tokens/s over timed steps after warm-up
(CUDA events, one host sync at the end), MFU = flops_per_token x tokens/s / peak (989 TFLOP/s
dense bf16, H100/H200 SXM). The same shape is then built as transformers' GPT2LMHeadModel /
LlamaForCausalLM (sdpa), compiled per decoder layer the same way, and timed in the same process.

Tessera is measured in each of `--variants` (options joined by '+'), so one call shows what each
change is worth:

    base        per-block compile, SDPA's default kernel choice, full logits + cross-entropy
    fused-ce    output layer + cross-entropy 8,192 tokens at a time, fused (model.loss_chunk_tokens)
    cudnn       SDPA prefers cuDNN's attention kernel (Hopper), then flash
    fullgraph   per-block compile with fullgraph=True
    model       compile the whole model instead of each block
    autotune    inductor mode max-autotune-no-cudagraphs
    batch2x     twice the microbatch (batch3x: three times)
    coordesc    inductor's coordinate-descent tuning of the Triton kernels it generates
    selective   selective activation checkpointing
    triton      Tessera's Triton kernels for SwiGLU and the RoPE head split (model.triton_kernels)
    bf16res     the residual stream in bf16 instead of float32 (model.autocast_residual)
    fp8         torchao float8 training of the blocks' linear layers (skipped without torchao)

transformers (bf16) is timed right after the first variant, and with FP8 after the last, so a
run cut short by a time limit still holds the comparison; mfu.json and mfu.md are rewritten
after every row for the same reason.

    python benchmarks/gpu_llm_mfu.py --sizes gpt-125m,gpt-350m,gpt-1b \\
        --variants base,fused-ce,cudnn+fused-ce --fp8 cudnn+fused-ce --out results/
    python benchmarks/gpu_llm_mfu.py --smoke          # CPU check of the script (tiny shapes)

`--profile VARIANT[,...]` also profiles those variants' steps (benchmarks/gpu_profile.py: GPU
kernel time by kind and the top kernels), written beside the rows in mfu.json and mfu.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tessera.models.gpt import GPT, GPTConfig

PEAK = 989e12
BATCH = {"gpt-125m": 16, "gpt-350m": 8, "gpt-1b": 8, "smoke": 2}
SEQ = 2048
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SMOKE = {"n_layer": 2, "n_head": 2, "d_model": 64, "vocab_size": 256}
OPTIONS = (
    "base",
    "fused-ce",
    "cudnn",
    "fullgraph",
    "model",
    "autotune",
    "batch2x",
    "batch3x",
    "coordesc",
    "selective",
    "triton",
    "bf16res",
    "fp8",
)
CE_CHUNK = 8192


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def shape(name: str, seq: int, **extra: Any) -> GPTConfig:
    if name == "smoke":  # a CPU check of the script itself
        return GPTConfig(**{**SMOKE, "max_seq_len": seq, **extra})
    return GPTConfig(preset=name, vocab_size=50304, max_seq_len=seq, **extra)


def parse_variant(text: str) -> set[str]:
    options = set(text.split("+"))
    unknown = options - set(OPTIONS)
    if unknown:
        raise SystemExit(f"unknown variant option(s) {sorted(unknown)}; choose from {OPTIONS}")
    return options - {"base"}


def attention_backends(options: set[str]) -> Any:
    """SDPA's kernel priority for a variant (cuDNN first with `cudnn`)."""
    if "cudnn" not in options or DEVICE != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    order = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
    return sdpa_kernel(order, set_priority=True)


def compile_options(options: set[str]) -> dict[str, Any]:
    settings: dict[str, Any] = {"fullgraph": "fullgraph" in options}
    if "autotune" in options:
        settings["mode"] = "max-autotune-no-cudagraphs"
    return settings


def time_steps(step_fn, steps: int, warmup: int) -> float:
    """Median seconds per step: CUDA events around each step, one host sync at the end."""
    for _ in range(warmup):
        step_fn()
    sync()
    if DEVICE != "cuda":
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step_fn()
            times.append(time.perf_counter() - start)
    else:
        events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
        events[0].record()
        for i in range(steps):
            step_fn()
            events[i + 1].record()
        sync()
        times = [events[i].elapsed_time(events[i + 1]) / 1000 for i in range(steps)]
    times.sort()
    return times[len(times) // 2]


def measure(
    row: dict,
    model,
    loss_of,
    flops_per_token: float,
    steps: int,
    warmup: int,
    options=(),
    profile: bool = False,
) -> dict:
    """Train `model` on `loss_of(model)` with bf16 autocast and fused AdamW; fills `row`."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=DEVICE == "cuda")

    def step() -> None:
        with attention_backends(set(options)), torch.autocast(DEVICE, dtype=torch.bfloat16):
            loss = loss_of(model)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    reset_memory()
    seconds = time_steps(step, steps, warmup)
    tokens = row["batch"] * row["seq"] / seconds
    row.update(
        tokens_per_s=round(tokens),
        mfu=round(flops_per_token * tokens / PEAK, 4),
        step_ms=round(1000 * seconds, 1),
        peak_memory_gib=peak_memory_gib(),
    )
    print(json.dumps(row), flush=True)
    if profile and DEVICE == "cuda":
        from gpu_profile import kernel_breakdown

        try:  # a profiler failure must not cost the measured row
            row["profile"] = kernel_breakdown(step)
        except Exception as error:
            row["profile_error"] = repr(error)[:300]
        print(json.dumps(row.get("profile", row.get("profile_error"))), flush=True)
    return row


def tessera_model(config: GPTConfig, options: set[str]) -> GPT:
    from tessera.parallel.blocks import apply_activation_checkpointing

    with torch.device(DEVICE):  # initialised where it trains: seconds saved per 1B model
        model = GPT(config)
    if "fp8" in options:
        from tessera.algorithms.float8 import convert_to_float8

        convert_to_float8(model)
    if "selective" in options:
        apply_activation_checkpointing(model, mode="selective")
    if "coordesc" in options:
        import torch._inductor.config as inductor

        inductor.coordinate_descent_tuning = True
    if DEVICE == "cuda":
        if "model" in options:
            model.compile(**compile_options(options))
        else:
            for block in model.blocks:
                block.compile(**compile_options(options))
    return model


def hf_model(config: GPTConfig, fp8: bool) -> torch.nn.Module:
    import transformers

    from tessera.models.gpt.hf_export import hf_config

    hf = hf_config(config, eos_id=None)
    hf._attn_implementation = "sdpa"
    with torch.device(DEVICE):
        model = transformers.AutoModelForCausalLM.from_config(hf)
    if fp8:
        from tessera.algorithms.float8 import convert_to_float8

        convert_to_float8(model)
    layers = model.transformer.h if config.position == "learned" else model.model.layers
    if DEVICE == "cuda":
        for layer in layers:
            layer.compile()
    return model


def fp8_available() -> str | None:
    """None when FP8 rows can be measured, else why not."""
    from tessera.algorithms.float8 import fp8_unavailable_reason

    reason = fp8_unavailable_reason(DEVICE)
    if reason:
        return reason
    try:
        import torchao.float8  # noqa: F401
    except ImportError:
        return "torchao is not installed (pip install --no-deps the torchao wheel)"
    return None


def plan(variants: list[str], with_fp8: list[str], hf: bool, fp8_ok: bool) -> list[tuple]:
    """The order of the runs of one size: each variant, its +fp8 run right after it;
    transformers in bf16 after the first run and in FP8 after the first FP8 run."""
    runs: list[tuple] = []
    for variant in variants:
        runs.append(("tessera", variant))
        if variant in with_fp8 and "fp8" not in variant:
            runs.append(("tessera", variant + "+fp8"))
    if hf:
        runs.insert(1, ("transformers", False))
        fp8_runs = [i for i, (_, v) in enumerate(runs) if isinstance(v, str) and "fp8" in v]
        if fp8_runs and fp8_ok:
            runs.insert(fp8_runs[0] + 1, ("transformers", True))
    return runs


def bench_size(name: str, args: argparse.Namespace, rows: list[dict], save) -> None:
    """Appends each measured row of size `name` to `rows`, calling `save()` after each."""
    seq = SEQ if name != "smoke" else 64
    variants = [v for v in args.variants.split(",") if v]
    for variant in variants:
        parse_variant(variant)
    with_fp8 = variants if args.fp8 == "all" else [v for v in args.fp8.split(",") if v]
    skip_fp8 = fp8_available() if with_fp8 or any("fp8" in v for v in variants) else None
    for library, variant in plan(variants, with_fp8, not args.no_hf, not skip_fp8):
        if library == "transformers":
            rows += bench_hf(name, seq, variant, args)
        elif "fp8" in parse_variant(variant) and skip_fp8:
            skipped = {"library": library, "size": name, "variant": variant, "skipped": skip_fp8}
            print(json.dumps(skipped), flush=True)
            continue
        else:
            rows += bench_tessera(name, seq, variant, args)
        save()


def bench_tessera(name: str, seq: int, variant: str, args: argparse.Namespace) -> list[dict]:
    options = parse_variant(variant)
    batch = BATCH[name] * (3 if "batch3x" in options else 2 if "batch2x" in options else 1)
    extra: dict[str, Any] = {"loss_chunk_tokens": CE_CHUNK} if "fused-ce" in options else {}
    extra["triton_kernels"] = "triton" in options
    extra["autocast_residual"] = "bf16res" in options
    config = shape(name, seq, **extra)
    torch.manual_seed(0)
    data = {"input_ids": torch.randint(0, config.vocab_size, (batch, seq + 1), device=DEVICE)}
    try:
        model = tessera_model(config, options)
        row = _row("tessera", name, variant, config, batch, seq)
        result = [
            measure(
                row,
                model,
                lambda m: m.loss(m(data), data),
                config.flops_per_token(seq),
                args.steps,
                args.warmup,
                options,
                profile=variant in args.profile.split(","),
            )
        ]
    except Exception as error:  # one variant failing (out of memory) must not end the run
        failed = {"library": "tessera", "size": name, "variant": variant}
        print(json.dumps({**failed, "error": repr(error)[:300]}), flush=True)
        result = []
    model = None
    if "coordesc" in options:
        import torch._inductor.config as inductor

        inductor.coordinate_descent_tuning = False
    reset_memory()
    return result


def bench_hf(name: str, seq: int, fp8: bool, args: argparse.Namespace) -> list[dict]:
    config = shape(name, seq)
    batch = BATCH[name]
    torch.manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (batch, seq), device=DEVICE)
    try:
        model = hf_model(config, fp8)
        row = _row("transformers", name, "fp8" if fp8 else "base", config, batch, seq)
        result = [
            measure(
                row,
                model,
                lambda m: m(input_ids=ids, labels=ids).loss,
                config.flops_per_token(seq),
                args.steps,
                args.warmup,
            )
        ]
    except Exception as error:
        print(json.dumps({"library": "transformers", "size": name, "error": repr(error)[:300]}))
        result = []
    model = None
    reset_memory()
    return result


def peak_memory_gib() -> float:
    """The most GPU memory allocated since the last `reset_memory()` (0 on a CPU)."""
    return round(torch.cuda.max_memory_allocated() / 2**30, 1) if DEVICE == "cuda" else 0.0


def reset_memory() -> None:
    import gc

    gc.collect()
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _row(library: str, name: str, variant: str, config: GPTConfig, batch: int, seq: int) -> dict:
    return {
        "library": library,
        "size": name,
        "variant": variant,
        "params": config.num_parameters(),
        "batch": batch,
        "seq": seq,
    }


def bench_generation(name: str) -> list[dict]:
    from tessera.serve.generate import Sampling, generate_ids

    config = shape(name, 1024 if name != "smoke" else 256)
    dtype = torch.bfloat16 if DEVICE == "cuda" else torch.float32
    model = GPT(config).to(DEVICE).to(dtype).eval()
    rows = []
    for batch in (1, 32):
        for cache in (True, False):
            prompts = [torch.randint(0, config.vocab_size, (64,)).tolist() for _ in range(batch)]
            new = 128 if name != "smoke" else 8
            generate_ids(
                model, prompts, Sampling(max_new_tokens=4, temperature=0.0), use_cache=cache
            )
            sync()
            start = time.perf_counter()
            out = generate_ids(
                model, prompts, Sampling(max_new_tokens=new, temperature=0.0), use_cache=cache
            )
            sync()
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "batch": batch,
                    "kv_cache": cache,
                    "tokens_per_s": round(sum(map(len, out)) / seconds),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| library | size | variant | params | batch x seq | step ms | tokens/s | MFU | peak GiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['library']} | {r['size']} | {r['variant']} | {r['params'] / 1e6:.0f}M | "
            f"{r['batch']}x{r['seq']} | {r['step_ms']} | {r['tokens_per_s']:,} | "
            f"{100 * r['mfu']:.1f}% | {r['peak_memory_gib']} |"
        )
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_profile beside this file
    from gpu_profile import breakdown_table

    for r in rows:
        if "profile" in r:
            title = f"{r['library']} {r['size']} {r['variant']}"
            lines += ["", breakdown_table(title, r["profile"])]
    return "\n".join(lines)


def save_results(out: str | Path | None, stem: str, payload: dict, text: str) -> None:
    """Writes `stem`.json and `stem`.md into `out` (each through a temporary file and a rename,
    so a run stopped by a time limit leaves the last complete rows, never a torn file)."""
    if not out:
        return
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in (
        (f"{stem}.json", json.dumps(payload, indent=1)),
        (f"{stem}.md", f"{json.dumps(payload.get('info', {}))}\n\n{text}\n"),
    ):
        temporary = folder / f".{name}.tmp"
        temporary.write_text(content)
        os.replace(temporary, folder / name)


def environment() -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu",
        "torch": torch.__version__,
    }
    for package in ("transformers", "torchao", "peft"):  # versions without importing them
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            info[package] = importlib.metadata.version(package)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="gpt-125m,gpt-350m,gpt-1b")
    parser.add_argument("--variants", default="base,cudnn+fused-ce,cudnn+fused-ce+batch2x")
    parser.add_argument(
        "--fp8", default="", help="variants to run again with +fp8 ('all': each); transformers too"
    )
    parser.add_argument("--profile", default="", help="variants whose steps are also profiled")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-hf", action="store_true", help="Tessera only")
    parser.add_argument("--no-generation", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU")
    parser.add_argument("--out", default=None, help="folder for mfu.json and mfu.md")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.steps, args.warmup = "smoke", 2, 1
    info = environment()
    print(json.dumps(info), flush=True)
    rows: list[dict] = []
    generation: list[dict] = []

    def save() -> None:
        payload = {"info": info, "training": rows, "generation": generation}
        save_results(args.out, "mfu", payload, table(rows))

    for name in args.sizes.split(","):
        bench_size(name, args, rows, save)
    if not args.no_generation:
        generation += bench_generation("smoke" if args.smoke else "gpt-125m")
    save()
    print("\n" + table(rows))


if __name__ == "__main__":
    main()
