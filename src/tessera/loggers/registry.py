"""Loggers by name, for recipes' `loggers:` section.

    loggers:
      progress: {log_interval: 50}
      jsonl:                      # writes <run folder>/metrics.jsonl
      tensorboard: {log_dir: tb}  # relative paths are inside the run folder

`LOGGERS` is a `tessera.core.registry.Registry` (entry-point group `tessera.loggers`); classes
are imported only when named (TensorBoard needs an optional package). Builders receive the run
folder as `run_dir`, against which relative paths resolve.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from tessera.core.logger import LoggerDestination
from tessera.core.registry import Registry

LOGGERS = Registry(
    "loggers",
    "loggers",
    {
        "progress": "tessera.loggers.progress:ProgressBarLogger",
        "jsonl": "tessera.loggers.jsonl:JSONLLogger",
        "tensorboard": "tessera.loggers.tensorboard:TensorBoardLogger",
        "mlflow": "tessera.loggers.mlflow:MLflowLogger",
        "wandb": "tessera.loggers.wandb:WandBLogger",
    },
)


def build_loggers(
    spec: Mapping[str, Any] | None, run_dir: str | Path | None = None
) -> list[LoggerDestination]:
    """Logger destinations from `{name: options}`; relative paths resolve inside `run_dir`."""
    return LOGGERS.build_mapping(spec, run_dir=Path(run_dir) if run_dir else None)


def _non_empty(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("is empty; give a file or folder path")
    return value


# A logger's file or folder option: a non-empty path, relative ones inside the run folder
# (`inside_run`, applied by the logger's `from_config`); written back as a string.
RunPath = Annotated[Path, BeforeValidator(_non_empty), PlainSerializer(str, return_type=str)]


def inside_run(path: Path, run_dir: Path | None) -> Path:
    """A logger's file path: relative paths go inside the run folder (when there is one)."""
    if path.is_absolute() or run_dir is None:
        return path
    return run_dir / path
