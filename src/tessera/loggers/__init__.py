"""Where metrics go: the console progress bar, a JSON-lines file, TensorBoard.

Imports are lazy (`tessera.loggers.JSONLLogger` loads its module on first use), so importing
the package costs nothing and TensorBoard is needed only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ProgressBarLogger": "tessera.loggers.progress",
    "JSONLLogger": "tessera.loggers.jsonl",
    "read_jsonl": "tessera.loggers.jsonl",
    "TensorBoardLogger": "tessera.loggers.tensorboard",
    "build_loggers": "tessera.loggers.registry",
    "LOGGERS": "tessera.loggers.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tessera.loggers' has no attribute {name!r}")
