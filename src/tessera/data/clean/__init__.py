"""Cleaning text corpora: exact and near deduplication, quality filters, personal data.

    from tessera.data.clean import CleanConfig, clean
    report = clean(["corpus/"], "clean/", CleanConfig(workers=2))

Names are imported on first use. See docs/data/clean.md.
"""

from __future__ import annotations

from tessera.core.lazy import lazy_getattr

_EXPORTS = {
    "clean": "tessera.data.clean.pipeline",
    "CleanConfig": "tessera.data.clean.config",
    "parse_config": "tessera.data.clean.config",
    "register_filter": "tessera.data.clean.filters",
    "Document": "tessera.data.clean.document",
    "redact": "tessera.data.clean.pii",
    "find_pii": "tessera.data.clean.pii",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
