"""Models by name, for recipes: `model: {name: resnet, width: 16}`.

Each entry pairs a pydantic config class (validates the YAML's fields, supplies defaults) with a
builder that returns a `ModelAdapter`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from tessera.core.errors import ConfigError, did_you_mean
from tessera.core.model import ModelAdapter


@dataclass(frozen=True)
class ModelEntry:
    config_class: type[BaseModel]
    build: Callable[[Any], ModelAdapter]


_MODELS: dict[str, ModelEntry] = {}
# Modules that register models when imported (kept lazy so `import tessera` stays fast).
_PROVIDERS = ["tessera.models.vision", "tessera.models.gpt"]


def register_model(
    name: str, config_class: type[BaseModel], build: Callable[[Any], ModelAdapter]
) -> None:
    _MODELS[name] = ModelEntry(config_class, build)


def _load_providers() -> None:
    for module in _PROVIDERS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise


def model_entry(name: str) -> ModelEntry:
    _load_providers()
    if name not in _MODELS:
        raise ConfigError(f"model.name: unknown model {name!r}; {did_you_mean(name, _MODELS)}")
    return _MODELS[name]


def model_names() -> list[str]:
    _load_providers()
    return sorted(_MODELS)
