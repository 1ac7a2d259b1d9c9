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
from tessera.models.gpt.config import GPTConfig, RopeScaling
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


def architecture_name(model: GPT) -> str:
    """The Hugging Face class export writes: the imported one, else GPT-2 or Llama."""
    if model.hf_origin:
        return str(model.hf_origin["architecture"])
    return {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}[
        target_architecture(model.config)
    ]


def origin_config(model: GPT) -> dict[str, Any]:
    """An imported model's config.json, updated with what a run may have changed (context
    length, RoPE settings), in the style (transformers 4 or 5 keys) it came in."""
    from tessera.models.gpt.hf_import import architecture_of, gpt_fields, rope_settings

    config, hf = model.config, dict(model.hf_origin["config"])  # type: ignore[index]
    where = Path("config.json")
    imported = gpt_fields(hf, architecture_of(hf, where), where)
    if hf.get("model_type") == "gpt2":
        return hf  # learned positions: nothing a run can change
    if config.max_seq_len != imported["max_seq_len"]:
        hf["max_position_embeddings"] = config.max_seq_len
    theta, old = rope_settings(hf, where)
    if (theta, RopeScaling.model_validate(old) if old else None) == (
        config.rope_theta,
        config.rope_scaling,
    ):
        return hf
    scaling = config.rope_scaling.model_dump() if config.rope_scaling else None
    params: dict[str, Any] = {"rope_type": "default"}
    if scaling is not None:
        params = {"rope_type": scaling["kind"], "factor": scaling["factor"]}
        if scaling["kind"] == "llama3":
            params["low_freq_factor"] = scaling["low_freq_factor"]
            params["high_freq_factor"] = scaling["high_freq_factor"]
            params["original_max_position_embeddings"] = scaling["original_max_seq_len"]
    if "rope_parameters" in hf:  # transformers 5
        hf["rope_parameters"] = {**params, "rope_theta": config.rope_theta}
    else:
        hf["rope_theta"] = config.rope_theta
        hf["rope_scaling"] = None if scaling is None else params
    return hf


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
    """Our weights under the mapped architecture's names and layouts (`hf_mapping`'s table),
    in the dtype of the checkpoint a model was imported from, else float32."""
    from tessera.models.gpt.hf_mapping import ARCHITECTURES, BY_NAME, expected_rows, to_theirs

    config = model.config
    origin = model.hf_origin
    arch = ARCHITECTURES[origin["architecture"]] if origin else BY_NAME[target_architecture(config)]
    dtype = getattr(torch, origin["dtype"]) if origin else torch.float32
    ours = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for name, row in expected_rows(arch, config):
        for hf_name, tensor in to_theirs(row, config, ours[name]).items():
            out[hf_name] = tensor.to(dtype).contiguous()
    if arch.name == "gpt2":  # GPT-2 always has biases: a model without them exports zeros
        out.update(_zero_biases(arch, config, out, dtype))
    return out


def _zero_biases(
    arch: Any, config: GPTConfig, out: dict[str, torch.Tensor], dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    from tessera.models.gpt.hf_mapping import expected_rows

    with_biases = config.model_copy(update={"bias": True, "qkv_bias": None})
    zeros = {}
    for _, row in expected_rows(arch, with_biases):
        for hf_name in row.theirs:
            if row.bias and hf_name not in out:
                weight = out[hf_name.removesuffix("bias") + "weight"]  # Conv1D: [in, out]
                zeros[hf_name] = torch.zeros(weight.shape[-1], dtype=dtype)
    return zeros


def hf_tokenizer(tokenizer: Any, max_length: int | None = None) -> Any:
    """A `PreTrainedTokenizerFast` equivalent to ours, or None for tokenizers without one;
    `max_length` (the model's positions) is what `truncation=True` cuts to, and longer
    encodings make transformers warn before the model fails on them."""
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
    limit = {"model_max_length": max_length} if max_length else {}
    return tf.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=eos, **limit)


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


def position_limit(config: GPTConfig) -> str:
    """What an export's user must know about its length: the positions it was trained for."""
    if config.position == "learned":
        return (
            f"the model has {config.max_seq_len} learned positions: transformers fails "
            f"(IndexError) on inputs longer than {config.max_seq_len} tokens; tokenize with "
            "truncation=True or keep the last tokens (the tokenizer's model_max_length is set)"
        )
    return (
        f"the model was trained on at most {config.max_seq_len} tokens "
        "(max_position_embeddings); longer inputs run but were never trained on"
    )


def export_hf(model: GPT, out_dir: str | Path, trained_from: str | Path | None = None) -> Path:
    """Write `config.json`, `model.safetensors` and tokenizer files into `out_dir`; with
    `trained_from` (the run or model folder), also the model card README.md naming the data it
    was trained on and its licences, and provenance.json, when that folder has a record.

    Files are written to a temporary folder beside it and moved in one by one, so an
    interrupted export never leaves a truncated file under a final name.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    origin = model.hf_origin
    weights = hf_state_dict(model)
    if origin is None:
        config = hf_config(model.config, getattr(model.tokenizer, "eos_id", None))
        tokenizer = hf_tokenizer(model.tokenizer, model.config.max_seq_len)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as staging:
        staging_path = Path(staging)
        save_file(weights, str(staging_path / "model.safetensors"), metadata={"format": "pt"})
        if origin is not None:
            _write_origin_files(model, staging_path)
        else:
            config.save_pretrained(staging_path)
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


def _write_origin_files(model: GPT, folder: Path) -> None:
    """config.json, tokenizer.json and the original tokenizer/generation files of an imported
    model (no `transformers` needed)."""
    import json

    origin = model.hf_origin or {}
    (folder / "config.json").write_text(json.dumps(origin_config(model), indent=2) + "\n")
    backend = getattr(model.tokenizer, "backend", None)
    if backend is not None:
        backend.save(str(folder / "tokenizer.json"))
    for name, content in origin.get("files", {}).items():
        text = content if isinstance(content, str) else json.dumps(content, indent=2) + "\n"
        (folder / name).write_text(text, encoding="utf-8")
