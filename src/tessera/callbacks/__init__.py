"""Callbacks that observe and report on a run: speed, learning rate, memory, early stopping.

Imports are lazy (`tessera.callbacks.SpeedMonitor` loads its module on first use), so
importing the package costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SpeedMonitor": "tessera.callbacks.speed_monitor",
    "LRMonitor": "tessera.callbacks.lr_monitor",
    "MemoryMonitor": "tessera.callbacks.memory_monitor",
    "EarlyStopper": "tessera.callbacks.early_stopping",
    "ThresholdStopper": "tessera.callbacks.early_stopping",
    "build_callbacks": "tessera.callbacks.registry",
    "CALLBACKS": "tessera.callbacks.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tessera.callbacks' has no attribute {name!r}")
