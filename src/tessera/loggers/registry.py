"""YAML names of the loggers, and building them from a run file's `loggers:` section.

    loggers:
      progress: {log_interval: 50}
      jsonl:                      # writes <run_dir>/metrics.jsonl
      tensorboard: {log_dir: tb}  # relative paths are inside the run folder

Classes are imported only when named (TensorBoard needs an optional package).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tessera.callbacks.registry import build_from_registry
from tessera.core.errors import ConfigError
from tessera.core.logger import LoggerDestination

LOGGERS: dict[str, tuple[str, str]] = {
    "progress": ("tessera.loggers.progress", "ProgressBarLogger"),
    "jsonl": ("tessera.loggers.jsonl", "JSONLLogger"),
    "tensorboard": ("tessera.loggers.tensorboard", "TensorBoardLogger"),
    "mlflow": ("tessera.loggers.mlflow", "MLflowLogger"),
    "wandb": ("tessera.loggers.wandb", "WandBLogger"),
}

# Path arguments, their default (inside the run folder).
_PATH_ARGUMENTS = {"jsonl": ("path", "metrics.jsonl"), "tensorboard": ("log_dir", "tensorboard")}


def build_loggers(
    spec: Mapping[str, Mapping[str, Any] | bool | None] | None,
    run_dir: str | Path,
    log_interval: Any = None,
) -> list[LoggerDestination]:
    """Logger destinations from `{name: arguments}`; relative paths resolve inside `run_dir`."""
    if spec is not None and isinstance(spec, Mapping):
        resolved: dict[str, Any] = {}
        for name, arguments in spec.items():
            if name in _PATH_ARGUMENTS and arguments is not False:
                arguments = _with_path(name, arguments, Path(run_dir))
            resolved[name] = arguments
        spec = resolved
    defaults = {"log_interval": log_interval} if log_interval is not None else {}
    return build_from_registry("loggers", LOGGERS, spec, defaults)


def _with_path(name: str, arguments: Any, run_dir: Path) -> Any:
    field, default = _PATH_ARGUMENTS[name]
    if arguments is None or arguments is True:
        arguments = {}
    if not isinstance(arguments, Mapping):
        return arguments  # the registry reports the bad value
    arguments = dict(arguments)
    value = arguments.get(field, default)
    if not isinstance(value, (str, Path)) or not str(value):
        raise ConfigError(f"loggers.{name}.{field}: {value!r} is not a path")
    path = Path(value)
    arguments[field] = path if path.is_absolute() else run_dir / path
    return arguments
