"""Import a local Hugging Face causal-LM folder as a Tessera GPT, tokenizer and chat template
attached: `import_hf(path)`, and in recipes `model.init_from: hf:PATH`.

Reads `config.json`, the weights (`model.safetensors`, or the shards an
`model.safetensors.index.json` lists) and `tokenizer.json` directly, without `transformers`,
for the GPT-2, Llama (1, 2, 3, with linear or Llama-3 RoPE scaling), Mistral and Qwen2
architectures. Anything the GPT cannot compute exactly (another architecture, sliding-window
attention past its window, biases on attention but not the MLP, ...) is refused with the
reason. Pickled weights (`pytorch_model.bin`) are refused too: Tessera executes nothing it reads.
The folder's original config and tokenizer files travel with the model (`GPT.hf_origin`), so
`tessera export hf` writes the same architecture back, tensor for tensor.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from tessera.core.errors import CheckpointError, ConfigError
from tessera.models.gpt.config import GPTConfig
from tessera.models.gpt.hf_mapping import ARCHITECTURES, Architecture, expected_rows, to_ours
from tessera.models.gpt.layers import rope_tables
from tessera.models.gpt.model import GPT

log = logging.getLogger(__name__)

PREFIX = "hf:"
INDEX = "model.safetensors.index.json"
# Files copied verbatim into the model's metadata and written back by export.
KEPT_FILES = ("tokenizer_config.json", "special_tokens_map.json", "generation_config.json")
# Options a run may change on an imported model: they do not change the weights' shapes.
CONTEXT_OPTIONS = ("max_seq_len", "rope_theta", "rope_scaling")
_GELU = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(
            f"{path}: missing; a Hugging Face model folder needs config.json, tokenizer.json and "
            "model.safetensors (or model.safetensors.index.json with its shards), as "
            "`save_pretrained` writes them."
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not readable JSON ({error}).") from None


def architecture_of(hf: dict[str, Any], where: Path) -> Architecture:
    names = hf.get("architectures") or []
    for name in names:
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    by_type = {arch.model_type: arch for arch in ARCHITECTURES.values()}
    if not names and hf.get("model_type") in by_type:
        return by_type[hf["model_type"]]
    found = ", ".join(names) or f"model_type {hf.get('model_type')!r}"
    raise ConfigError(
        f"{where}: architecture {found} is not supported; Tessera imports "
        f"{', '.join(ARCHITECTURES)}."
    )


def _refuse(where: Path, option: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"{where}: {option} = {value!r} is not supported: {why}.")


def rope_settings(hf: dict[str, Any], where: Path) -> tuple[float, dict[str, Any] | None]:
    """rope_theta and our rope_scaling from either config style (transformers 4: rope_theta +
    rope_scaling; 5: rope_parameters)."""
    params = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return theta, None
    if kind == "linear":
        return theta, {"kind": "linear", "factor": float(params["factor"])}
    if kind == "llama3":
        return theta, {
            "kind": "llama3",
            "factor": float(params["factor"]),
            "low_freq_factor": float(params.get("low_freq_factor", 1.0)),
            "high_freq_factor": float(params.get("high_freq_factor", 4.0)),
            "original_max_seq_len": int(params["original_max_position_embeddings"]),
        }
    raise _refuse(where, "rope type", kind, "Tessera's RoPE supports default, linear and llama3")


def _gpt2_fields(hf: dict[str, Any], where: Path) -> dict[str, Any]:
    activation = hf.get("activation_function", "gelu_new")
    if activation not in _GELU:
        raise _refuse(where, "activation_function", activation, f"accepted: {list(_GELU)}")
    for option, fine in (("scale_attn_by_inverse_layer_idx", False), ("scale_attn_weights", True)):
        if hf.get(option, fine) != fine:
            raise _refuse(where, option, hf[option], "Tessera scales attention by 1/sqrt(head)")
    return {
        "position": "learned",
        "norm": "layernorm",
        "mlp": "gelu",
        "bias": True,
        "gelu_approximate": _GELU[activation],
        "vocab_size": hf["vocab_size"],
        "max_seq_len": hf.get("n_positions", 1024),
        "n_layer": hf["n_layer"],
        "n_head": hf["n_head"],
        "d_model": hf["n_embd"],
        "d_ff": hf.get("n_inner") or 4 * hf["n_embd"],
        "norm_eps": hf.get("layer_norm_epsilon", 1e-5),
        "tie_embeddings": hf.get("tie_word_embeddings", True),
    }


def _decoder_fields(hf: dict[str, Any], arch: Architecture, where: Path) -> dict[str, Any]:
    if hf.get("hidden_act", "silu") != "silu":
        raise _refuse(where, "hidden_act", hf["hidden_act"], "Tessera's SwiGLU uses silu")
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or d // heads
    if head_dim * heads != d:
        raise _refuse(
            where, "head_dim", head_dim, f"Tessera needs hidden_size / heads ({d // heads})"
        )
    theta, scaling = rope_settings(hf, where)
    fields: dict[str, Any] = {
        "position": "rope",
        "norm": "rmsnorm",
        "mlp": "swiglu",
        "bias": False,
        "vocab_size": hf["vocab_size"],
        "max_seq_len": hf.get("max_position_embeddings", 2048),
        "n_layer": hf["num_hidden_layers"],
        "n_head": heads,
        "n_kv_head": hf.get("num_key_value_heads") or heads,
        "d_model": d,
        "d_ff": hf["intermediate_size"],
        "norm_eps": hf.get("rms_norm_eps", 1e-6),
        "rope_theta": theta,
        "rope_scaling": scaling,
        "tie_embeddings": hf.get("tie_word_embeddings", False),
    }
    if arch.name == "qwen2":
        fields["qkv_bias"] = True
    attention_bias, mlp_bias = hf.get("attention_bias", False), hf.get("mlp_bias", False)
    if attention_bias != mlp_bias:
        raise _refuse(
            where,
            "attention_bias/mlp_bias",
            (attention_bias, mlp_bias),
            "Tessera's `bias` puts biases on all linear layers or none",
        )
    fields["bias"] = bool(attention_bias)
    window = _sliding_window(hf, arch)
    if window is not None and window < fields["max_seq_len"]:
        fields["max_seq_len"] = window  # full attention equals the window's up to its length
    return fields


def _sliding_window(hf: dict[str, Any], arch: Architecture) -> int | None:
    if arch.name == "qwen2":
        layer_types = hf.get("layer_types") or []
        sliding = hf.get("use_sliding_window", False) or "sliding_attention" in layer_types
        return hf.get("sliding_window") if sliding else None
    if arch.name == "mistral":
        return hf.get("sliding_window")
    return None


def gpt_fields(hf: dict[str, Any], arch: Architecture, where: Path) -> dict[str, Any]:
    """GPTConfig fields equivalent to a Hugging Face config, or the reason there are none."""
    try:
        if arch.name == "gpt2":
            return _gpt2_fields(hf, where)
        return _decoder_fields(hf, arch, where)
    except KeyError as error:
        raise CheckpointError(
            f"{where}: no {error.args[0]!r}, which {arch.hf_class} needs."
        ) from None


def hf_gpt_config(path: str | Path, overrides: dict[str, Any] | None = None) -> GPTConfig:
    """The GPTConfig of a Hugging Face folder (with context `overrides`), reading no weights."""
    folder = _folder(path)
    hf = _read_json(folder / "config.json")
    arch = architecture_of(hf, folder / "config.json")
    fields = gpt_fields(hf, arch, folder / "config.json")
    window = _sliding_window(hf, arch)
    if window is not None and fields["max_seq_len"] == window:
        log.warning(
            "%s: %s attends over a sliding window of %d tokens; Tessera's attention is full, "
            "which is the same up to that length, so the model is imported with max_seq_len %d",
            folder / "config.json",
            arch.hf_class,
            window,
            window,
        )
    return GPTConfig.parse(_with_overrides(fields, overrides or {}, hf, arch, folder))


def _folder(path: str | Path) -> Path:
    text = str(path)
    folder = Path(text[len(PREFIX) :] if text.startswith(PREFIX) else text)
    if not folder.is_dir():
        raise CheckpointError(
            f"{str(folder)!r} is not a folder; give a local Hugging Face model folder (the one "
            "`save_pretrained` or `huggingface-cli download` wrote)."
        )
    return folder


def _with_overrides(
    fields: dict[str, Any],
    overrides: dict[str, Any],
    hf: dict[str, Any],
    arch: Architecture,
    folder: Path,
) -> dict[str, Any]:
    """`fields` with a run's options; a context longer than the positions allow is refused."""
    merged = {**fields, **overrides}
    wanted = overrides.get("max_seq_len")
    if wanted is not None and wanted != fields["max_seq_len"]:
        if arch.name == "gpt2":
            raise ConfigError(
                f"model.max_seq_len: {wanted} is not possible for {folder}: GPT-2's learned "
                f"positions have exactly n_positions = {fields['max_seq_len']} rows (config.json); "
                "leave max_seq_len out (shorter sequences are fine)."
            )
        window = _sliding_window(hf, arch)
        if window is not None and wanted > window:
            raise ConfigError(
                f"model.max_seq_len: {wanted} is above the sliding window of {window} tokens of "
                f"{folder} (config.json sliding_window), past which Tessera's full attention "
                "would compute another function; use at most that."
            )
        trained = fields["max_seq_len"]
        if wanted > trained and merged.get("rope_scaling") == fields.get("rope_scaling"):
            log.warning(
                "model.max_seq_len %d is beyond the %d positions %s was trained at; consider "
                "model.rope_theta or model.rope_scaling for context extension (docs/llm.md)",
                wanted,
                trained,
                folder,
            )
    return merged


class _Weights:
    """Reads tensors by name from one or several safetensors files, each opened once."""

    def __init__(self, folder: Path) -> None:
        from safetensors import safe_open

        index = folder / INDEX
        if index.is_file():
            weight_map = _read_json(index).get("weight_map") or {}
            files = sorted(set(weight_map.values()))
        elif (folder / "model.safetensors").is_file():
            files = ["model.safetensors"]
            weight_map = None
        else:
            pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
            extra = (
                f"; {', '.join(pickled)} is pickled, which Tessera does not load (it could run "
                "code): convert it with transformers' save_pretrained(safe_serialization=True)"
                if pickled
                else ""
            )
            raise CheckpointError(f"{folder}: no model.safetensors or {INDEX}{extra}.")
        self.handles = {}
        for name in files:
            path = folder / name
            if not path.is_file():
                raise CheckpointError(f"{path}: missing (listed in {INDEX}).")
            self.handles[name] = safe_open(str(path), framework="pt")
        self.location: dict[str, str] = {}
        for name, handle in self.handles.items():
            for key in handle.keys():  # noqa: SIM118 (safe_open is not iterable)
                self.location[key] = name
        self.folder = folder

    def read(self, key: str) -> torch.Tensor:
        return self.handles[self.location[key]].get_tensor(key)

    def dtype(self) -> torch.dtype:
        first = next(iter(self.location))
        return self.read(first).dtype


def _load_tensors(model: GPT, arch: Architecture, weights: _Weights, dtype: torch.dtype) -> None:
    config = model.config
    names = set(weights.location)
    # Checkpoints of the base model (GPT-2 on the hub) lack the 'transformer.' prefix.
    renamed = {}
    if arch.prefix and not any(n.startswith(arch.prefix) for n in names):
        renamed = {arch.prefix + n: n for n in names}

    def read(name: str) -> torch.Tensor:
        key = renamed.get(name, name)
        if key not in weights.location:
            raise CheckpointError(
                f"{weights.folder}: tensor {key!r} is missing, which {arch.hf_class} with this "
                "config.json needs; the weights do not match the config."
            )
        used.add(key)
        return weights.read(key)

    used: set[str] = set()
    state = {}
    expected = model.state_dict()
    for ours, row in expected_rows(arch, config):
        tensor = to_ours(row, config, read)
        if tuple(tensor.shape) != tuple(expected[ours].shape):
            raise CheckpointError(
                f"{weights.folder}: {', '.join(row.theirs)} give {ours} the shape "
                f"{tuple(tensor.shape)}, but config.json says {tuple(expected[ours].shape)}."
            )
        state[ours] = tensor.to(dtype)
    tied_head = "lm_head.weight"
    if config.tie_embeddings and (renamed.get(tied_head, tied_head) in names):
        used.add(renamed.get(tied_head, tied_head))  # some tied checkpoints store the head too
    leftover = sorted(n for n in names - used if not n.endswith(arch.ignored))
    if leftover:
        raise ConfigError(
            f"{weights.folder}: tensors {', '.join(leftover[:5])} have no place in Tessera's "
            f"GPT (an option of {arch.hf_class} it does not implement); not imported."
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {tied_head}, (missing, unexpected)


def _empty_model(config: GPTConfig) -> GPT:
    """A GPT whose parameters are allocated but not initialised (the weights overwrite them)."""
    with torch.device("meta"):
        model = GPT(config)
    model = model.to_empty(device="cpu")
    if config.tie_embeddings:  # to_empty made the shared weight two tensors
        model.lm_head.weight = model.embed.weight
    if config.position == "rope":  # buffers are computed, not stored: compute them again
        scaling = config.rope_scaling
        cos, sin = rope_tables(config.head_dim, config.max_seq_len, config.rope_theta, scaling)
        model.rope_cos.copy_(cos)
        model.rope_sin.copy_(sin)
    return model


def load_tokenizer_files(folder: Path, hf: dict[str, Any]) -> tuple[Any, str]:
    """Our BPE tokenizer over the folder's tokenizer.json, and its end-of-sequence token."""
    from tessera.data.text.tokenizers import BPETokenizer, _tokenizers
    from tessera.models.gpt.hf_chat import special_token

    path = folder / "tokenizer.json"
    if not path.is_file():
        other = [p.name for p in folder.glob("*.model")] + [p.name for p in folder.glob("vocab.*")]
        hint = (
            f" ({', '.join(other)} is a slow-tokenizer file: load the folder with transformers' "
            "AutoTokenizer and save_pretrained it, which writes tokenizer.json)"
            if other
            else ""
        )
        raise CheckpointError(f"{path}: missing; Tessera reads fast tokenizers{hint}.")
    backend = _tokenizers().Tokenizer.from_file(str(path))
    settings = (
        _read_json(folder / "tokenizer_config.json")
        if (folder / "tokenizer_config.json").is_file()
        else {}
    )
    eos = special_token(settings.get("eos_token"))
    if eos is None:
        eos_id = hf.get("eos_token_id")
        eos_id = eos_id[0] if isinstance(eos_id, list) and eos_id else eos_id
        eos = backend.id_to_token(eos_id) if isinstance(eos_id, int) else None
    return BPETokenizer(backend, eos_token=eos), eos or ""


def import_hf(
    path: str | Path, overrides: dict[str, Any] | None = None, dtype: torch.dtype = torch.float32
) -> GPT:
    """The model of a local Hugging Face folder as a GPT (eval mode, on the CPU, `dtype`),
    with its tokenizer (`model.tokenizer`), chat template (`model.chat_template`) and the
    folder's config and tokenizer files (`model.hf_origin`) attached.

    `overrides` sets options that keep the weights' shapes (CONTEXT_OPTIONS and
    TRAINING_OPTIONS, e.g. dropout or loss_chunk_tokens)."""
    from tessera.models.gpt.hf_chat import hf_chat_template

    folder = _folder(path)
    hf = _read_json(folder / "config.json")
    arch = architecture_of(hf, folder / "config.json")
    config = hf_gpt_config(folder, overrides)
    weights = _Weights(folder)
    tokenizer, eos = load_tokenizer_files(folder, hf)
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(
            f"{folder}: tokenizer.json has {tokenizer.vocab_size} tokens but config.json's "
            f"vocab_size is {config.vocab_size}; the tokenizer belongs to another model."
        )
    model = _empty_model(config)
    _load_tensors(model, arch, weights, dtype)
    model.tokenizer = tokenizer
    model.chat_template = hf_chat_template(folder, eos)
    files: dict[str, Any] = {
        n: _read_json(folder / n) for n in KEPT_FILES if (folder / n).is_file()
    }
    if (folder / "chat_template.jinja").is_file():
        files["chat_template.jinja"] = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    model.hf_origin = {
        "architecture": arch.hf_class,
        "config": hf,
        "dtype": str(weights.dtype()).removeprefix("torch."),
        "files": files,
    }
    return model.eval()
