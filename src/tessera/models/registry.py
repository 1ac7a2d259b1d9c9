"""Models by name, for recipes: `model: {name: resnet, width: 16}`.

Each entry pairs a pydantic config class (validates the YAML's fields, supplies defaults) with a
builder that returns a `ModelAdapter`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from tessera.core.model import ModelAdapter
from tessera.core.registry import Entry, NamedRegistry

# Modules that register models when imported (kept lazy so `import tessera` stays fast).
MODELS = NamedRegistry("model", "model", ["tessera.models.vision", "tessera.models.gpt"])


def register_model(
    name: str, config_class: type[BaseModel], build: Callable[[Any], ModelAdapter]
) -> None:
    MODELS.register(name, config_class, build)


def model_entry(name: str) -> Entry:
    return MODELS.entry(name)


def model_names() -> list[str]:
    return MODELS.names()
