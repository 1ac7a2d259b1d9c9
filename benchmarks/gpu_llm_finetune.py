"""Fine-tuning throughput of an imported 1B model: Tessera vs transformers (+ peft for LoRA).

Builds a model of the real Llama-3.2-1B shape (16 layers, d 2048, GQA 32/8 heads, 128,256-token
vocabulary, tied embeddings, Llama-3 RoPE scaling) with random weights locally with
transformers (no download), saves it as a Hugging Face folder (bf16 safetensors + a small
tokenizer.json), then in the same process:

* Tessera: `import_hf` (hf: import), full fine-tuning and LoRA (rank 16 on q/k/v/o + MLP),
  per-block compile, output layer + cross-entropy in chunks of 8,192 tokens;
* transformers: `from_pretrained` of the same folder (sdpa), per-layer compile, full
  fine-tuning, and LoRA through peft with the same rank and targets.

Each: bf16 autocast over fp32 master weights, fused AdamW on the trained parameters, batch 8 x
2048 tokens, tokens/s (median step after warm-up) and peak memory. MFU uses 6N + attention per
token for full fine-tuning and 4N + attention for LoRA (no weight gradients of frozen layers).
The runs go in pairs (full: Tessera, transformers; then LoRA: Tessera, peft); finetune.json
and finetune.md are rewritten after each.

    python benchmarks/gpu_llm_finetune.py --out results/      # one H200: ~2 minutes
    python benchmarks/gpu_llm_finetune.py --smoke             # CPU check (tiny shape)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
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

LLAMA_32_1B = {
    "vocab_size": 128256,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
}
SMOKE = {
    **LLAMA_32_1B,
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
}
TARGETS_OURS = ["attn.qkv", "attn.proj", "mlp.up", "mlp.down"]
TARGETS_HF = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_folder(folder: Path, shape: dict) -> Path:
    """A random model of `shape` saved as a Hugging Face folder, with a word-level tokenizer."""
    import tokenizers as tk
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(**shape, bos_token_id=1, eos_token_id=2)
    with torch.device(DEVICE):  # random initialisation of 1.2B weights is quick there
        model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    model = None
    reset_memory()
    words = ["<unk>", "<s>", "</s>", *(f"w{i}" for i in range(253))]
    tokenizer = tk.Tokenizer(tk.models.WordLevel({w: i for i, w in enumerate(words)}, "<unk>"))
    tokenizer.pre_tokenizer = tk.pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    return folder


def flops_per_token(params: int, layers: int, width: int, seq: int, lora: bool) -> float:
    return (4.0 if lora else 6.0) * params + 12.0 * layers * width * seq


def tessera_row(folder: Path, shape: dict, batch: int, seq: int, steps: int, lora: bool) -> dict:
    from tessera.models.gpt.hf_import import import_hf
    from tessera.models.gpt.lora import LoRAConfig, apply_lora

    model = import_hf(folder, overrides={"loss_chunk_tokens": 8192, "max_seq_len": seq})
    if lora:
        apply_lora(model, LoRAConfig(rank=16, alpha=32, targets=TARGETS_OURS))
    model = model.to(DEVICE).train()
    if DEVICE == "cuda":
        for block in model.blocks:
            block.compile()
    data = {"input_ids": torch.randint(0, shape["vocab_size"], (batch, seq + 1), device=DEVICE)}
    layers, width = shape["num_hidden_layers"], shape["hidden_size"]
    flops = flops_per_token(model.config.matmul_parameters(), layers, width, seq, lora)
    return run("tessera", lora, model, lambda m: m.loss(m(data), data), batch, seq, steps, flops)


def hf_row(folder: Path, shape: dict, batch: int, seq: int, steps: int, lora: bool) -> dict:
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="sdpa"
    )
    library = "transformers"
    if lora:
        import peft

        model = peft.get_peft_model(
            model, peft.LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS_HF)
        )
        library = "transformers+peft"
    model = model.to(DEVICE).train()
    base = model.base_model.model if lora else model
    if DEVICE == "cuda":
        for layer in base.model.layers:
            layer.compile()
    ids = torch.randint(0, shape["vocab_size"], (batch, seq), device=DEVICE)
    width, layers = shape["hidden_size"], shape["num_hidden_layers"]
    matmul = sum(p.numel() for n, p in base.named_parameters() if "lora_" not in n)
    matmul -= shape["vocab_size"] * width if not shape["tie_word_embeddings"] else 0
    return run(
        library,
        lora,
        model,
        lambda m: m(input_ids=ids, labels=ids).loss,
        batch,
        seq,
        steps,
        flops_per_token(matmul, layers, width, seq, lora),
    )


def run(library, lora, model, loss_of, batch, seq, steps, flops) -> dict:
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-5, fused=DEVICE == "cuda")

    def step() -> None:
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            loss = loss_of(model)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    reset_memory()
    seconds = time_steps(step, steps, warmup=3 if DEVICE == "cuda" else 1)
    tokens = batch * seq / seconds
    row = {
        "library": library,
        "method": "lora" if lora else "full",
        "trained_params": sum(p.numel() for p in trained),
        "batch": batch,
        "seq": seq,
        "tokens_per_s": round(tokens),
        "mfu": round(flops * tokens / PEAK, 4),
        "peak_memory_gib": peak_memory_gib(),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--no-hf", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    shape = SMOKE if args.smoke else LLAMA_32_1B
    batch, seq, steps = (2, 64, 2) if args.smoke else (args.batch, args.seq, args.steps)
    info = environment()
    print(json.dumps(info), flush=True)
    rows: list[dict] = []
    # pairs side by side, so a run stopped by a time limit keeps whole comparisons
    jobs = [(tessera_row, False), (hf_row, False), (tessera_row, True), (hf_row, True)]
    with tempfile.TemporaryDirectory(prefix="llama-1b-") as tmp:
        folder = build_folder(Path(tmp) / "Llama-3.2-1B-shape", shape)
        for job, lora in jobs:
            if job is hf_row and args.no_hf:
                continue
            try:
                rows.append(job(folder, shape, batch, seq, steps, lora))
            except Exception as error:  # out of memory in one must not end the run
                name = "tessera" if job is tessera_row else "transformers"
                rows.append({"library": name, "lora": lora, "error": repr(error)[:300]})
                print(json.dumps(rows[-1]), flush=True)
            reset_memory()
            save_results(args.out, "finetune", {"info": info, "rows": rows}, table(rows))
    print("\n" + table(rows))


def table(rows: list[dict]) -> str:
    lines = [
        "| library | method | trained params | batch x seq | tokens/s | MFU | peak GiB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "error" in r:
            method = "lora" if r["lora"] else "full"
            lines.append(f"| {r['library']} | {method} | error: {r['error'][:80]} | | | | |")
            continue
        lines.append(
            f"| {r['library']} | {r['method']} | {r['trained_params'] / 1e6:.1f}M | "
            f"{r['batch']}x{r['seq']} | {r['tokens_per_s']:,} | {100 * r['mfu']:.1f}% | "
            f"{r['peak_memory_gib']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
