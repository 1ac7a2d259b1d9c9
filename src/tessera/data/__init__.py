"""Tessera data: the shard format, `ShardWriter`, `StreamingDataset` and stream mixing.

Names are imported on first use, so `import tessera.data.<module>` stays light.
"""

from __future__ import annotations

from tessera.core.lazy import lazy_getattr

_EXPORTS = {
    "ShardWriter": "tessera.data.writer",
    "merge_indexes": "tessera.data.writer",
    "StreamingDataset": "tessera.data.dataset",
    "Stream": "tessera.data.streams",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
