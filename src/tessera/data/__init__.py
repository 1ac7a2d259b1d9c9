"""Tessera data: the shard format, `ShardWriter`, `StreamingDataset` and stream mixing.

Names are imported on first use, so `import tessera.data.<module>` stays light.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "ShardWriter": "tessera.data.writer",
    "merge_indexes": "tessera.data.writer",
    "StreamingDataset": "tessera.data.dataset",
    "Stream": "tessera.data.streams",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tessera.data' has no attribute {name!r}")
