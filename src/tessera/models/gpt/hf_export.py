"""Export a Tessera GPT as a Hugging Face `transformers` model folder.

Maps onto a native architecture so the folder loads with `AutoModelForCausalLM` and no custom
code: GPT-2 (learned positions, LayerNorm, GELU, multi-head attention) or Llama (RoPE, RMSNorm,
SwiGLU, multi-head or grouped-query attention). Other combinations (ALiBi, mixed styles) have no
native equivalent and are refused with the reason. The tokenizer is written as a
`tokenizer.json` that `AutoTokenizer` reads. `transformers` is imported only here (the
`transformers` extra).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from tessera.core.errors import ConfigError, UserError
from tessera.models.gpt.config import GPTConfig
from tessera.models.gpt.model import GPT


def target_architecture(config: GPTConfig) -> str:
    """'gpt2' or 'llama', or a `UserError` saying which options have no native equivalent."""
    extras = config.speedrun_options()
    if extras:
        raise UserError(
            f"no Hugging Face architecture has {', '.join(extras)} (speed-run options of this "
            "model); it cannot be exported to transformers. Its Tessera export (final/) loads "
            "with tessera.models.gpt.load_gpt."
        )
    if (config.position, config.norm, config.mlp) == ("learned", "layernorm", "gelu"):
        if config.kv_heads != config.n_head:
            raise UserError(
                f"GPT-2 has no grouped-query attention; this model has n_kv_head "
                f"{config.kv_heads} != n_head {config.n_head}, so it cannot be exported."
            )
        return "gpt2"
    if (config.position, config.norm, config.mlp) == ("rope", "rmsnorm", "swiglu"):
        return "llama"
    raise UserError(
        f"no native Hugging Face architecture for position={config.position!r}, "
        f"norm={config.norm!r}, mlp={config.mlp!r}; export supports GPT-2 style "
        "(learned, layernorm, gelu) and Llama style (rope, rmsnorm, swiglu)."
    )


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ConfigError(
            "Hugging Face export needs `transformers`: pip install 'tessera-train[transformers]'"
        ) from None
    return transformers


def hf_config(config: GPTConfig, eos_id: int | None) -> Any:
    """The `transformers` config object for the mapped architecture."""
    tf = _transformers()
    special = {"bos_token_id": eos_id, "eos_token_id": eos_id}
    if target_architecture(config) == "gpt2":
        return tf.GPT2Config(
            vocab_size=config.vocab_size,
            n_positions=config.max_seq_len,
            n_embd=config.d_model,
            n_layer=config.n_layer,
            n_head=config.n_head,
            n_inner=config.hidden_dim,
            activation_function="gelu",
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            layer_norm_epsilon=config.norm_eps,
            tie_word_embeddings=config.tie_embeddings,
            architectures=["GPT2LMHeadModel"],
            **special,
        )
    return tf.LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        intermediate_size=config.hidden_dim,
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        num_key_value_heads=config.kv_heads,
        head_dim=config.head_dim,
        max_position_embeddings=config.max_seq_len,
        rms_norm_eps=config.norm_eps,
        rope_theta=config.rope_theta,
        hidden_act="silu",
        attention_bias=config.bias,
        mlp_bias=config.bias,
        tie_word_embeddings=config.tie_embeddings,
        architectures=["LlamaForCausalLM"],
        **special,
    )


def hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our weights under the mapped architecture's names and layouts."""
    config = model.config
    ours = {k: v.detach().cpu().float().contiguous() for k, v in model.state_dict().items()}
    if target_architecture(config) == "gpt2":
        return _gpt2_weights(config, ours)
    return _llama_weights(config, ours)


def _gpt2_weights(config: GPTConfig, ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    def bias_or_zeros(key: str, size: int) -> torch.Tensor:
        return ours[key] if key in ours else torch.zeros(size)

    out = {
        "transformer.wte.weight": ours["embed.weight"],
        "transformer.wpe.weight": ours["pos_embed.weight"],
    }
    d, hidden = config.d_model, config.hidden_dim
    layers = [("norm1", "ln_1"), ("norm2", "ln_2")]
    linears = [("attn.qkv", "attn.c_attn", 3 * d), ("attn.proj", "attn.c_proj", d)]
    linears += [("mlp.up", "mlp.c_fc", hidden), ("mlp.down", "mlp.c_proj", d)]
    for i in range(config.n_layer):
        src, dst = f"blocks.{i}.", f"transformer.h.{i}."
        for ours_name, hf_name in layers:
            out[dst + hf_name + ".weight"] = ours[src + ours_name + ".weight"]
            out[dst + hf_name + ".bias"] = bias_or_zeros(src + ours_name + ".bias", d)
        for ours_name, hf_name, size in linears:  # GPT-2's Conv1D stores weights transposed
            out[dst + hf_name + ".weight"] = ours[src + ours_name + ".weight"].t().contiguous()
            out[dst + hf_name + ".bias"] = bias_or_zeros(src + ours_name + ".bias", size)
    out["transformer.ln_f.weight"] = ours["norm.weight"]
    out["transformer.ln_f.bias"] = bias_or_zeros("norm.bias", d)
    if not config.tie_embeddings:
        out["lm_head.weight"] = ours["lm_head.weight"]
    return out


def _llama_weights(config: GPTConfig, ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {
        "model.embed_tokens.weight": ours["embed.weight"],
        "model.norm.weight": ours["norm.weight"],
    }
    q_size = config.n_head * config.head_dim
    kv_size = config.kv_heads * config.head_dim
    hidden = config.hidden_dim
    for i in range(config.n_layer):
        src, dst = f"blocks.{i}.", f"model.layers.{i}."
        out[dst + "input_layernorm.weight"] = ours[src + "norm1.weight"]
        out[dst + "post_attention_layernorm.weight"] = ours[src + "norm2.weight"]
        pieces = {
            "self_attn.q_proj": ("attn.qkv", 0, q_size),
            "self_attn.k_proj": ("attn.qkv", q_size, q_size + kv_size),
            "self_attn.v_proj": ("attn.qkv", q_size + kv_size, q_size + 2 * kv_size),
            "self_attn.o_proj": ("attn.proj", None, None),
            "mlp.gate_proj": ("mlp.up", 0, hidden),
            "mlp.up_proj": ("mlp.up", hidden, 2 * hidden),
            "mlp.down_proj": ("mlp.down", None, None),
        }
        for hf_name, (ours_name, lo, hi) in pieces.items():
            for kind in ("weight", "bias"):
                key = f"{src}{ours_name}.{kind}"
                if key in ours:
                    tensor = ours[key] if lo is None else ours[key][lo:hi]
                    out[f"{dst}{hf_name}.{kind}"] = tensor.contiguous()
    if not config.tie_embeddings:
        out["lm_head.weight"] = ours["lm_head.weight"]
    return out


def hf_tokenizer(tokenizer: Any) -> Any:
    """A `PreTrainedTokenizerFast` equivalent to ours, or None for tokenizers without one."""
    if tokenizer is None:
        return None
    tf = _transformers()
    kind = getattr(tokenizer, "kind", None)
    if kind == "bpe":
        backend = tokenizer.backend
    elif kind == "char":
        import tokenizers as tk

        # A BPE model without merges maps each character to its own id; Fuse joins them back.
        vocab = {c: i for i, c in enumerate(tokenizer.chars)}
        if tokenizer.eos_id is not None:
            vocab["<|endoftext|>"] = tokenizer.eos_id
        backend = tk.Tokenizer(tk.models.BPE(vocab=vocab, merges=[]))
        backend.decoder = tk.decoders.Fuse()
        if tokenizer.eos_id is not None:
            backend.add_special_tokens(["<|endoftext|>"])
    elif kind == "byte":
        import tokenizers as tk

        # GPT-2's byte-to-character table makes each byte one vocabulary entry, id = byte value.
        alphabet = _byte_alphabet()
        backend = tk.Tokenizer(tk.models.BPE(vocab={alphabet[b]: b for b in range(256)}, merges=[]))
        backend.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        backend.decoder = tk.decoders.ByteLevel()
        backend.add_special_tokens(["<|endoftext|>"])
    else:
        return None
    eos = "<|endoftext|>" if tokenizer.eos_id is not None else None
    return tf.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=eos)


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (used by ByteLevel)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def export_hf(model: GPT, out_dir: str | Path, trained_from: str | Path | None = None) -> Path:
    """Write `config.json`, `model.safetensors` and tokenizer files into `out_dir`; with
    `trained_from` (the run or model folder), also the model card README.md naming the data it
    was trained on and its licences, and provenance.json, when that folder has a record.

    Files are written to a temporary folder beside it and moved in one by one, so an
    interrupted export never leaves a truncated file under a final name.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    config = hf_config(model.config, getattr(model.tokenizer, "eos_id", None))
    weights = hf_state_dict(model)
    tokenizer = hf_tokenizer(model.tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as staging:
        staging_path = Path(staging)
        config.save_pretrained(staging_path)
        save_file(weights, str(staging_path / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_pretrained(staging_path)
        for item in staging_path.iterdir():
            if item.is_file():
                os.replace(item, out / item.name)
            else:
                shutil.copytree(item, out / item.name, dirs_exist_ok=True)
    if trained_from is not None:
        from tessera.data.training_provenance import write_model_card

        write_model_card(out, trained_from)
    return out
