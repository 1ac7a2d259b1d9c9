"""One evaluator for the language-model races: both sides' checkpoints, the same code.

A race compares nanoGPT and Tessera at the points each one measured itself, but each program
estimates its validation loss its own way (nanoGPT: 200 or 20 random batches; Tessera: a
fixed subset). Here both checkpoints are scored by the same function on the whole validation
split: the text's last 10% of characters (the split both programs train against), cut into
consecutive windows of the model's context, every character after the first predicted once.

nanoGPT's checkpoints (`ckpt.pt`, read with `weights_only=True`) are GPT-2 shaped, so their
weights load 1:1 into a Tessera GPT of the same shape (learned positions, LayerNorm, GELU,
tied head); `nanogpt_reference_loss` checks the conversion by running the peer's own model
code in a subprocess, in the peer's folder, on the same windows.

    python benchmarks/lm_scoring.py CHECKPOINT... --text input.txt [--nanogpt]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

VAL_FRACTION = 0.1


def validation_text(text: str) -> str:
    """The last 10% of the characters: nanoGPT's `data[int(n*0.9):]`, and Tessera's split of
    a single document (`val_fraction: 0.1`)."""
    return text[int(len(text) * (1 - VAL_FRACTION)) :]


def nanogpt_to_tessera(checkpoint: dict[str, Any], text: str) -> Any:
    """A Tessera GPT holding a nanoGPT checkpoint's weights, with the char tokenizer nanoGPT's
    prepare.py builds (the sorted characters of the text)."""
    from tessera.data.text.tokenizers import CharTokenizer
    from tessera.models.gpt import GPT, GPTConfig

    args = checkpoint["model_args"]
    config = GPTConfig(
        vocab_size=args["vocab_size"],
        max_seq_len=args["block_size"],
        n_layer=args["n_layer"],
        n_head=args["n_head"],
        d_model=args["n_embd"],
        bias=bool(args["bias"]),
        position="learned",
        norm="layernorm",
        mlp="gelu",
        tie_embeddings=True,
        dropout=0.0,
    )
    model = GPT(config, tokenizer=CharTokenizer(sorted(set(text))))
    names = {
        "transformer.wte.weight": "embed.weight",
        "transformer.wpe.weight": "pos_embed.weight",
        "transformer.ln_f.weight": "norm.weight",
        "transformer.ln_f.bias": "norm.bias",
        "lm_head.weight": "lm_head.weight",
    }
    layer = {
        "ln_1": "norm1",
        "ln_2": "norm2",
        "attn.c_attn": "attn.qkv",
        "attn.c_proj": "attn.proj",
        "mlp.c_fc": "mlp.up",
        "mlp.c_proj": "mlp.down",
    }
    state = {}
    for key, value in checkpoint["model"].items():
        key = key.removeprefix("_orig_mod.")
        if key.startswith("transformer.h."):
            index, rest = key[len("transformer.h.") :].split(".", 1)
            module, leaf = rest.rsplit(".", 1)
            state[f"blocks.{index}.{layer[module]}.{leaf}"] = value
        elif key.endswith(".attn.bias"):  # the causal mask buffer of old PyTorch versions
            continue
        else:
            state[names[key]] = value
    model.load_state_dict(state)
    return model.eval()


def load_nanogpt(path: Path, text: str) -> tuple[Any, int]:
    """(the converted model, its iteration) of a nanoGPT ckpt.pt."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return nanogpt_to_tessera(checkpoint, text), int(checkpoint["iter_num"])


def load_tessera(path: Path) -> Any:
    """The model of a Tessera checkpoint (`ep<E>-ba<B>.pt`), rebuilt from its run's recipe."""
    from tessera.config.build import build_trained_model

    _, model, _ = build_trained_model(path)
    return model.eval()


def windows(ids: torch.Tensor, context: int) -> list[torch.Tensor]:
    """Consecutive windows of context + 1 tokens sharing one token, the last one shorter:
    every token after the first is a target exactly once."""
    return [ids[start : start + context + 1] for start in range(0, len(ids) - 1, context)]


@torch.no_grad()
def score(
    model: Any,
    text: str,
    device: str = "cpu",
    batch_size: int = 256,
    limit: int | None = None,
) -> dict[str, float]:
    """Mean next-character loss (nats) and bits per character over the validation split."""
    val = validation_text(text)
    if limit is not None:
        val = val[: limit + 1]
    ids = torch.tensor(model.tokenizer.encode(val), dtype=torch.long)
    context = model.config.max_seq_len
    pieces = windows(ids, context)
    model = model.to(device).eval()
    total, count = 0.0, 0
    full = [p for p in pieces if len(p) == context + 1]
    batches = [torch.stack(full[i : i + batch_size]) for i in range(0, len(full), batch_size)]
    batches += [p.unsqueeze(0) for p in pieces if len(p) != context + 1]
    for batch in batches:
        batch = batch.to(device)
        logits = model.run(batch[:, :-1]).float()
        nll = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(), reduction="sum")
        total += float(nll)
        count += batch[:, 1:].numel()
    mean = total / count
    return {
        "val_loss": round(mean, 5),
        "bits_per_char": round(mean / math.log(2), 5),
        "tokens": count,
    }


_REFERENCE = """
import json, sys, torch
from model import GPT, GPTConfig
ckpt = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
model = GPT(GPTConfig(**ckpt["model_args"]))
model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()})
model.eval()
batch = torch.tensor(json.loads(sys.argv[2]))
with torch.no_grad():
    _, loss = model(batch[:, :-1].contiguous(), batch[:, 1:].contiguous())
print(float(loss))
"""


def nanogpt_reference_loss(peer: Path, checkpoint: Path, text: str, rows: int = 8) -> dict:
    """The loss of the first `rows` validation windows by nanoGPT's own model code (run in
    the peer's folder) and by the converted Tessera model: they must agree."""
    model, _ = load_nanogpt(checkpoint, text)
    ids = torch.tensor(model.tokenizer.encode(validation_text(text)), dtype=torch.long)
    context = model.config.max_seq_len
    batch = torch.stack(windows(ids, context)[:rows])
    with torch.no_grad():
        ours = float(
            F.cross_entropy(model.run(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
        )
    result = subprocess.run(
        [sys.executable, "-c", _REFERENCE, str(checkpoint), json.dumps(batch.tolist())],
        cwd=peer,
        capture_output=True,
        text=True,
        check=True,
        env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"},
    )
    theirs = float(result.stdout.strip().splitlines()[-1])
    return {"nanogpt_code": round(theirs, 6), "tessera_code": round(ours, 6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--text", required=True, type=Path)
    parser.add_argument("--nanogpt", action="store_true", help="the checkpoints are nanoGPT's")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, default=None, help="score the first N characters")
    args = parser.parse_args()
    text = args.text.read_text(encoding="utf-8")
    for path in args.checkpoints:
        model = load_nanogpt(path, text)[0] if args.nanogpt else load_tessera(path)
        print(
            json.dumps(
                {"checkpoint": str(path), **score(model, text, args.device, limit=args.limit)}
            )
        )


if __name__ == "__main__":
    main()
