"""Data sets by name, for recipes: `data: {name: fashion_mnist, batch_size: 128}`.

Each entry pairs a pydantic config class with a builder that returns the train dataloader and
the evaluation dataloaders for one rank. `batch_size` is the global batch (all ranks together).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from tessera.core.errors import ConfigError
from tessera.core.registry import Entry, NamedRegistry


@dataclass
class DataLoaders:
    train: Iterable[Any]
    eval: dict[str, Iterable[Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class DataContext:
    """What a builder needs to know about the run: seed and this process's place in it."""

    seed: int = 0
    rank: int = 0
    world_size: int = 1


# Modules that register data sets when imported (kept lazy so `import tessera` stays fast).
DATASETS = NamedRegistry("data", "data set", ["tessera.data.vision", "tessera.data.text"])


def register_dataset(
    name: str, config_class: type[BaseModel], build: Callable[[Any, DataContext], DataLoaders]
) -> None:
    DATASETS.register(name, config_class, build)


def dataset_entry(name: str) -> Entry:
    return DATASETS.entry(name)


def per_rank_batch_size(batch_size: int, context: DataContext) -> int:
    """Split the global batch evenly over ranks, or say which sizes would work."""
    if batch_size % context.world_size:
        raise ConfigError(
            f"data.batch_size: {batch_size} cannot be split evenly over {context.world_size} "
            f"processes; use a multiple of {context.world_size}"
        )
    return batch_size // context.world_size
