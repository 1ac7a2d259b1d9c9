"""Models by name, for recipes: `model: {name: resnet, width: 16}`.

`MODELS` is a `tessera.core.registry.Registry` (entry-point group `tessera.models`). Each entry
is a builder function marked with `@builder(SomeConfig)`: the config validates the section and
supplies defaults, the builder returns a `TrainableModel`.
"""

from __future__ import annotations

from tessera.core.registry import Registry

MODELS = Registry(
    "models",
    "model",
    {
        "resnet": "tessera.models.vision:build_resnet",
        "gpt": "tessera.models.gpt.registration:build_gpt",
        "dpo": "tessera.models.gpt.dpo:build_dpo",
    },
)


def model_names() -> list[str]:
    return MODELS.names()
