"""YAML names of the callbacks, and building them from a run file's `callbacks:` section.

    callbacks:
      speed_monitor: {window: 50}
      lr_monitor:            # empty: default arguments
      early_stopping: {monitor: metrics/eval/accuracy, mode: max, patience: 3}
      memory_monitor: false  # switched off (handy for `key=value` overrides)

Classes are imported only when named, so importing the registry stays cheap.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from tessera.core.callback import Callback
from tessera.core.errors import ConfigError, did_you_mean

# YAML name -> (module, class)
CALLBACKS: dict[str, tuple[str, str]] = {
    "speed_monitor": ("tessera.callbacks.speed_monitor", "SpeedMonitor"),
    "lr_monitor": ("tessera.callbacks.lr_monitor", "LRMonitor"),
    "memory_monitor": ("tessera.callbacks.memory_monitor", "MemoryMonitor"),
    "early_stopping": ("tessera.callbacks.early_stopping", "EarlyStopper"),
    "threshold_stopping": ("tessera.callbacks.early_stopping", "ThresholdStopper"),
    "icl_evaluation": ("tessera.eval.callback", "ICLEvaluation"),  # tasks during training
}


def build_callbacks(
    spec: Mapping[str, Mapping[str, Any] | bool | None] | None,
    log_interval: Any = None,
) -> list[Callback]:
    """Callbacks from `{name: arguments}`; `log_interval` is the default for those taking one."""
    defaults = {"log_interval": log_interval} if log_interval is not None else {}
    return build_from_registry("callbacks", CALLBACKS, spec, defaults)


def build_from_registry(
    section: str,
    registry: Mapping[str, tuple[str, str]],
    spec: Mapping[str, Mapping[str, Any] | bool | None] | None,
    defaults: Mapping[str, Any] | None = None,
) -> list[Any]:
    """Instantiate each named entry of `spec`, with errors that name section, entry and field.

    An entry's arguments may be a mapping, empty/None/true (defaults) or false (left out).
    `defaults` fill in arguments an entry accepts but does not give.
    """
    if spec is None:
        return []
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{section}: expected a mapping of names to arguments, got {type(spec).__name__} "
            f"{spec!r}; accepted names: {', '.join(sorted(registry))}"
        )
    built = []
    for name, arguments in spec.items():
        if name not in registry:
            raise ConfigError(
                f"{section}: unknown name {name!r}; {did_you_mean(str(name), registry)}"
            )
        if arguments is False:
            continue
        if arguments is None or arguments is True:
            arguments = {}
        if not isinstance(arguments, Mapping):
            raise ConfigError(
                f"{section}.{name}: expected a mapping of arguments (or nothing, or false), got "
                f"{arguments!r}"
            )
        module_name, class_name = registry[name]
        cls = getattr(importlib.import_module(module_name), class_name)
        built.append(_instantiate(f"{section}.{name}", cls, dict(arguments), defaults or {}))
    return built


def accepted_arguments(cls: type) -> list[str]:
    """The keyword arguments a class's constructor takes."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return [
        p.name
        for p in parameters
        if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def required_arguments(cls: type) -> list[str]:
    """The constructor arguments that have no default."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return [
        p.name
        for p in parameters
        if p.name != "self"
        and p.default is p.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def _instantiate(where: str, cls: type, arguments: dict[str, Any], defaults: Mapping[str, Any]):
    accepted = accepted_arguments(cls)
    for field in arguments:
        if field not in accepted:
            raise ConfigError(
                f"{where}: unknown argument {field!r}; {did_you_mean(str(field), accepted)} "
                f"Accepted arguments: {', '.join(accepted)}"
            )
    missing = [field for field in required_arguments(cls) if field not in arguments]
    if missing:
        raise ConfigError(
            f"{where}: missing required argument(s) {', '.join(repr(f) for f in missing)}; "
            f"accepted arguments: {', '.join(accepted)}"
        )
    for field, value in defaults.items():
        if field in accepted and field not in arguments:
            arguments[field] = value
    try:
        return cls(**arguments)
    except ConfigError as error:
        raise ConfigError(f"{where}.{error}") from error
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"{where}: arguments {arguments!r} are not accepted ({error}); accepted "
            f"arguments: {', '.join(accepted)}"
        ) from error
