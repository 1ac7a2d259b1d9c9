"""`Registry`: the one way a recipe names a pluggable component (a model, a data set, a method,
a callback, a logger, ...).

Every entry is a component: an object with a pydantic `Config` and a `from_config(config,
**context)` that builds it (a `Configurable` class, or a builder function marked with
`@builder(SomeConfig)`). Entries come from three places, all looked up lazily so that
`import tessera` stays fast:

- the built-in table, `name -> "module:attribute"`, imported on first use;
- `registry.register(name, component)` (also a decorator) from Python;
- Python entry points in the group `tessera.<kind>` (for example `tessera.algorithms`), so an
  installed third-party package adds a method that recipes then name (docs/extending.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any, TypeVar

from pydantic import BaseModel

from tessera.core.component import build_config, validate_options
from tessera.core.errors import ConfigError, did_you_mean

T = TypeVar("T")


def builder(config_class: type[BaseModel]) -> Callable[[T], T]:
    """Mark a function `build(config, **context)` as the component for `config_class`."""

    def mark(function: T) -> T:
        function.Config = config_class  # type: ignore[attr-defined]
        function.from_config = function  # type: ignore[attr-defined]
        return function

    return mark


def _import(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


class Registry:
    """Components of one kind by name; errors name the recipe section and the closest names."""

    def __init__(self, kind: str, section: str, builtins: Mapping[str, str] | None = None) -> None:
        self.kind = kind  # plural, as in the entry-point group: "algorithms"
        self.section = section  # where recipes name them: "algorithms", "model", ...
        self.group = f"tessera.{kind}"
        self._targets: dict[str, Any] = dict(builtins or {})
        self._plugins: dict[str, metadata.EntryPoint] | None = None

    # -- entries -----------------------------------------------------------------------------

    def register(self, name: str, component: Any = None) -> Any:
        """Add `component` under `name`; without a component, a decorator that adds one."""
        if component is None:
            return lambda target: self.register(name, target)
        _check_component(name, component)
        self._targets[name] = component
        return component

    def _entry_points(self) -> dict[str, metadata.EntryPoint]:
        if self._plugins is None:
            found = metadata.entry_points(group=self.group)
            self._plugins = {ep.name: ep for ep in found if ep.name not in self._targets}
        return self._plugins

    def names(self) -> list[str]:
        return sorted({*self._targets, *self._entry_points()})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def get(self, name: str) -> Any:
        """The component registered as `name`, imported now if it was lazy."""
        if isinstance(name, str) and name in self._targets:
            target = self._targets[name]
            if isinstance(target, str):
                target = self._targets[name] = _import(target)
            return target
        plugin = self._entry_points().get(name) if isinstance(name, str) else None
        if plugin is None:
            raise ConfigError(
                f"{self.section}: unknown {self.kind.rstrip('s')} {name!r}; "
                f"{did_you_mean(str(name), self.names())}"
            )
        try:
            component = plugin.load()
        except Exception as error:
            raise ConfigError(
                f"{self.section}: {name!r} comes from the plug-in entry point {plugin.value!r} "
                f"(group {self.group}), which failed to import: {type(error).__name__}: {error}"
            ) from error
        return self.register(name, component)

    def config_class(self, name: str) -> type[BaseModel]:
        return self.get(name).Config

    # -- validation and building -------------------------------------------------------------

    def validate(self, name: str, options: Any, where: str) -> tuple[BaseModel | None, list[str]]:
        """Check one entry's options; (config, problems) with problems naming `where.field`."""
        try:
            schema = self.config_class(name)
        except ConfigError as error:
            return None, [str(error)]
        return validate_options(schema, options, where)

    def build(self, name: str, options: Any = None, **context: Any) -> Any:
        config = build_config(self.config_class(name), options, f"{self.section}.{name}")
        return self.get(name).from_config(config, **context)

    def validate_mapping(self, spec: Any) -> tuple[dict[str, BaseModel], list[str]]:
        """A `{name: options}` section: options may be a mapping, empty, true, or false (off)."""
        if spec is None:
            return {}, []
        if not isinstance(spec, Mapping):
            return {}, [
                f"{self.section}: expected a mapping of names to options, e.g. "
                f"{{{self.names()[0] if self.names() else 'name'}: {{}}}}, got "
                f"{type(spec).__name__} {spec!r}"
            ]
        configs: dict[str, BaseModel] = {}
        problems: list[str] = []
        for name, options in spec.items():
            if options is False:
                continue
            if options is None or options is True:
                options = {}
            config, found = self.validate(name, options, f"{self.section}.{name}")
            problems += found
            if config is not None:
                configs[name] = config
        return configs, problems

    def build_mapping(self, spec: Any, **context: Any) -> list[Any]:
        """Build every enabled entry of a `{name: options}` section, in order."""
        configs, problems = self.validate_mapping(spec)
        if problems:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
        return [self.get(name).from_config(config, **context) for name, config in configs.items()]


def _check_component(name: str, component: Any) -> None:
    if isinstance(component, str):
        return
    config = getattr(component, "Config", None)
    if not (isinstance(config, type) and issubclass(config, BaseModel)) or not callable(
        getattr(component, "from_config", None)
    ):
        raise ConfigError(
            f"cannot register {name!r}: {component!r} has no pydantic `Config` and "
            "`from_config`; subclass tessera.core.component.Configurable (Algorithm, Callback "
            "and LoggerDestination do) or mark a builder function with @builder(YourConfig)"
        )
