"""Tiny Hugging Face model folders built locally with transformers (no hub): a BPE tokenizer
trained on real text with each family's special tokens and a chat template, and a randomly
initialised model of the family, every weight perturbed so a wrong mapping shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
SHAKESPEARE = ROOT / ".." / "shared" / "data" / "tinyshakespeare" / "input.txt"

# Jinja chat templates in each family's layout (written for these tests).
LLAMA3_JINJA = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
    "\n\n{{ m['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHATML_JINJA = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

FAMILIES: dict[str, dict[str, Any]] = {
    "gpt2": {"special": ["<|endoftext|>"], "eos": "<|endoftext|>", "bos": None, "jinja": None},
    "llama": {
        "special": [
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ],
        "eos": "<|eot_id|>",
        "bos": "<|begin_of_text|>",
        "jinja": LLAMA3_JINJA,
    },
    "mistral": {"special": ["<s>", "</s>"], "eos": "</s>", "bos": "<s>", "jinja": None},
    "qwen2": {
        "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "eos": "<|im_end|>",
        "bos": None,
        "jinja": CHATML_JINJA,
    },
}


def train_tokenizer(family: str, vocab_size: int = 320) -> Any:
    """A transformers fast tokenizer with the family's special tokens and chat template."""
    import tokenizers as tk
    import transformers

    spec = FAMILIES[family]
    backend = tk.Tokenizer(tk.models.BPE())
    backend.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=spec["special"],
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = SHAKESPEARE.read_text(encoding="utf-8")[:20_000]
    backend.train_from_iterator([text], trainer)
    if spec["bos"]:
        bos = spec["bos"]
        backend.post_processor = tk.processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, backend.token_to_id(bos))],
        )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=spec["bos"],
        eos_token=spec["eos"],
        chat_template=spec["jinja"],
    )


def hf_config(family: str, vocab_size: int, **overrides: Any) -> Any:
    import transformers

    common = {"vocab_size": vocab_size}
    if family == "gpt2":
        fields = {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64, **common}
        return transformers.GPT2Config(**{**fields, **overrides})
    fields = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        **common,
    }
    cls = {
        "llama": transformers.LlamaConfig,
        "mistral": transformers.MistralConfig,
        "qwen2": transformers.Qwen2Config,
    }[family]
    return cls(**{**fields, **overrides})


# Each family's test shape: the options the importer must get right.
SHAPES: dict[str, dict[str, Any]] = {
    "gpt2": {"tie_word_embeddings": True},
    "llama": {
        "tie_word_embeddings": True,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    },
    "mistral": {"tie_word_embeddings": False, "sliding_window": 48},
    "qwen2": {"tie_word_embeddings": False},
}


def make_hf_folder(
    folder: Path,
    family: str,
    dtype: torch.dtype = torch.float32,
    shard: bool = False,
    **overrides: Any,
) -> Path:
    """Write a tiny random model of `family` with its tokenizer into `folder` (returned)."""
    import transformers

    torch.manual_seed(0)
    tokenizer = train_tokenizer(family)
    config = hf_config(family, len(tokenizer), **{**SHAPES[family], **overrides})
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    model = model.to(dtype)
    model.save_pretrained(folder, max_shard_size="40KB" if shard else "5GB")
    tokenizer.save_pretrained(folder)
    return folder


def hf_logits(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(ids).logits


def read_config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))
