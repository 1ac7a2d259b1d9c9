"""Registers the GPT family for recipes: `model: {name: gpt, preset: gpt-125m, ...}`."""

from __future__ import annotations

from tessera.models.gpt.config import GPTConfig
from tessera.models.gpt.model import GPT
from tessera.models.registry import register_model


class GPTRecipeConfig(GPTConfig):
    """`GPTConfig` plus the registry's `name` field."""

    name: str = "gpt"


def build_gpt(config: GPTConfig) -> GPT:
    """The model a recipe describes; its tokenizer (if named) is loaded, checked against
    vocab_size (or supplies it) and saved with the model."""
    from tessera.data.text.tokenizers import load_tokenizer

    shape = GPTConfig.model_validate(config.model_dump(exclude={"name", "preset"}))
    tokenizer = load_tokenizer(shape.tokenizer) if shape.tokenizer else None
    if tokenizer is not None:
        shape = shape.with_vocab(tokenizer.vocab_size)
    return GPT(shape, tokenizer=tokenizer)


register_model("gpt", GPTRecipeConfig, build_gpt)
