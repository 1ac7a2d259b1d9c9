"""Callbacks that observe and report on a run: speed, learning rate, memory, early stopping.

Imports are lazy (`tessera.callbacks.SpeedMonitor` loads its module on first use), so
importing the package costs nothing.
"""

from __future__ import annotations

from tessera.core.lazy import lazy_getattr

_EXPORTS = {
    "SpeedMonitor": "tessera.callbacks.speed_monitor",
    "LRMonitor": "tessera.callbacks.lr_monitor",
    "MemoryMonitor": "tessera.callbacks.memory_monitor",
    "EarlyStopper": "tessera.callbacks.early_stopping",
    "ThresholdStopper": "tessera.callbacks.early_stopping",
    "ProvenanceRecorder": "tessera.callbacks.provenance",
    "build_callbacks": "tessera.callbacks.registry",
    "CALLBACKS": "tessera.callbacks.registry",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
