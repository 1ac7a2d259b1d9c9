"""Data sets by name, for recipes: `data: {name: fashion_mnist, batch_size: 128}`.

`DATASETS` is a `tessera.core.registry.Registry` (entry-point group `tessera.data`). Each entry
is a builder marked with `@builder(SomeConfig)` that returns the train dataloader and the
evaluation dataloaders for one rank, given a `DataContext`. `batch_size` is the global batch
(all ranks together).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tessera.core.errors import ConfigError
from tessera.core.registry import Registry


@dataclass
class DataLoaders:
    train: Iterable[Any]
    eval: dict[str, Iterable[Any]] = field(default_factory=dict)
    # How each input was prepared (normalisation, shape, classes): written into the final
    # model's config.json as "inputs", for those who feed the model outside Tessera.
    inputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataContext:
    """What a builder needs to know about the run: seed and this process's place in it."""

    seed: int = 0
    rank: int = 0
    world_size: int = 1
    model: Any = None  # the run's model, for data that uses its tokenizer or chat template


DATASETS = Registry(
    "data",
    "data",
    {
        "fashion_mnist": "tessera.data.vision:build_fashion_mnist",
        "text": "tessera.data.text.registration:build_text",
        "chat": "tessera.data.text.chat_data:build_chat",
        "preference": "tessera.data.text.preference:build_preference",
    },
)


def per_rank_batch_size(batch_size: int, context: DataContext) -> int:
    """Split the global batch evenly over ranks, or say which sizes would work."""
    if batch_size % context.world_size:
        raise ConfigError(
            f"data.batch_size: {batch_size} cannot be split evenly over {context.world_size} "
            f"processes; use a multiple of {context.world_size}"
        )
    return batch_size // context.world_size
