"""`NamedRegistry`: components chosen by name in a recipe (`model: {name: resnet}`).

Each entry pairs a pydantic config class (validates the section, supplies defaults) with a
builder. Provider modules register their entries when imported; they are imported on first
lookup so that `import tessera` stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from tessera.core.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class Entry:
    config_class: type[BaseModel]
    build: Callable[..., Any]


class NamedRegistry:
    """Entries by name for one recipe section; errors name the section and close names."""

    def __init__(self, section: str, noun: str, providers: Sequence[str]) -> None:
        self.section, self.noun = section, noun
        self.providers = list(providers)
        self.entries: dict[str, Entry] = {}
        self._loaded = False

    def register(self, name: str, config_class: type[BaseModel], build: Callable[..., Any]):
        self.entries[name] = Entry(config_class, build)

    def _load_providers(self) -> None:
        if self._loaded:
            return
        for module in self.providers:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as error:
                if error.name != module:
                    raise
        self._loaded = True

    def entry(self, name: str) -> Entry:
        self._load_providers()
        if name not in self.entries:
            raise ConfigError(
                f"{self.section}.name: unknown {self.noun} {name!r}; "
                f"{did_you_mean(name, self.entries)}"
            )
        return self.entries[name]

    def names(self) -> list[str]:
        self._load_providers()
        return sorted(self.entries)
