"""Registers the GPT family for recipes: `model: {name: gpt, preset: gpt-125m, ...}`.

Fine-tuning recipes add `init_from` (an exported model to start from: its shape and tokenizer
come with it) and `lora` (train low-rank adapters instead of all weights).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from tessera.core.errors import ConfigError
from tessera.core.registry import builder
from tessera.models.gpt.config import GPTConfig
from tessera.models.gpt.lora import LoRAConfig, apply_lora
from tessera.models.gpt.model import GPT

# Options that may differ from a checkpoint being fine-tuned (they do not change weight shapes).
TRAINING_OPTIONS = ("dropout", "loss_chunk_tokens", "triton_kernels", "autocast_residual")
# Context-extension options a run may set on a RoPE model it starts from.
CONTEXT_OPTIONS = ("max_seq_len", "rope_theta", "rope_scaling")
_RECIPE_ONLY = {"name", "preset", "init_from", "lora"}  # recipe fields that are not GPTConfig's
_NOT_SHAPE = _RECIPE_ONLY | {"tokenizer", "init", "init_std"}


class GPTRecipeConfig(GPTConfig):
    """`GPTConfig` plus the registry's `name`, a checkpoint to start from, and LoRA."""

    name: str = "gpt"
    init_from: str | None = Field(
        None,
        description="exported model (run folder) to start from, or hf:PATH for a local Hugging "
        "Face folder (GPT-2, Llama, Mistral, Qwen2)",
    )
    lora: LoRAConfig | None = Field(None, description="train LoRA adapters only")


@builder(GPTRecipeConfig)
def build_gpt(config: GPTRecipeConfig) -> GPT:
    """The model a recipe describes; its tokenizer (if named) is loaded, checked against
    vocab_size (or supplies it) and saved with the model."""
    if config.init_from is not None:
        model = _from_checkpoint(config)
    else:
        from tessera.data.text.tokenizers import load_tokenizer

        shape = GPTConfig.model_validate(config.model_dump(exclude=_RECIPE_ONLY))
        tokenizer = load_tokenizer(shape.tokenizer) if shape.tokenizer else None
        if tokenizer is not None:
            shape = shape.with_vocab(tokenizer.vocab_size)
        model = GPT(shape, tokenizer=tokenizer)
    if config.lora is not None:
        apply_lora(model, config.lora)
    return model


def _from_checkpoint(config: GPTRecipeConfig) -> GPT:
    from tessera.models.gpt.checkpoint import find_checkpoint, load_gpt, read_export_config
    from tessera.models.gpt.hf_import import PREFIX, hf_gpt_config, import_hf

    source = str(config.init_from)
    from_hf = source.startswith(PREFIX)
    if from_hf:
        saved: dict[str, Any] = hf_gpt_config(source).model_dump()
    else:
        saved = read_export_config(find_checkpoint(source))["model"]
    # Shape fields left at their defaults mean "the checkpoint's"; any other value must match.
    changeable = set(TRAINING_OPTIONS) | set(CONTEXT_OPTIONS)
    shape_fields = set(GPTConfig.model_fields) - _NOT_SHAPE - changeable
    mismatched = [
        f for f in sorted(shape_fields) if _given(config, f) and getattr(config, f) != saved.get(f)
    ]
    if mismatched:
        details = ", ".join(
            f"{f}: recipe {getattr(config, f)!r} vs checkpoint {saved.get(f)!r}" for f in mismatched
        )
        raise ConfigError(
            f"model.init_from: {config.init_from} is a model of another shape ({details}); "
            "remove these fields from the recipe (the checkpoint's shape is used) or start "
            "from a matching checkpoint."
        )
    overrides = {f: getattr(config, f) for f in TRAINING_OPTIONS}  # this run's, always
    context = {f: _dumped(getattr(config, f)) for f in CONTEXT_OPTIONS if _given(config, f)}
    if context and not from_hf:
        _check_context(config, saved, context)
    if from_hf:
        model = import_hf(source, overrides={**overrides, **context})
    else:
        model = load_gpt(source, overrides={**overrides, **context})
    return model.train()


def _given(config: GPTRecipeConfig, field: str) -> bool:
    return getattr(config, field) != GPTConfig.model_fields[field].default


def _dumped(value: Any) -> Any:
    return value.model_dump() if hasattr(value, "model_dump") else value


def _check_context(config: GPTRecipeConfig, saved: dict[str, Any], context: dict[str, Any]) -> None:
    """Learned position tables have a fixed number of rows: a longer context is refused."""
    wanted = context.get("max_seq_len")
    if saved.get("position") == "learned" and wanted is not None and wanted != saved["max_seq_len"]:
        raise ConfigError(
            f"model.max_seq_len: {wanted} is not possible for {config.init_from}: its learned "
            f"positions have exactly {saved['max_seq_len']} rows; leave max_seq_len out "
            "(shorter sequences are fine)."
        )
