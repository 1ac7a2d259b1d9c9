"""Streams: the data sets a `StreamingDataset` mixes, and how many samples each gives per epoch.

Each stream says its share with one of `proportion` (a fraction of the epoch), `repeat` (a
multiple of its own size, e.g. 0.5 or 3) or `choose` (a number of samples). Whole copies are
taken in full; the remainder is a random subset drawn again each epoch from the seed and epoch.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from tessera.core.errors import DataError


@dataclass
class Stream:
    """One data set in a mix: where it is, where to cache it, and its share of each epoch."""

    remote: str | None = None
    local: str | None = None
    split: str | None = None
    proportion: float | None = None
    repeat: float | None = None
    choose: int | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.remote is None and self.local is None:
            raise DataError("A stream needs `remote` (a URL or folder) or `local` (a folder).")
        given = [n for n in ("proportion", "repeat", "choose") if getattr(self, n) is not None]
        if len(given) > 1:
            raise DataError(
                f"Stream {self.name} sets {' and '.join(given)}; give at most one of proportion, "
                "repeat or choose."
            )
        for name in given:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise DataError(f"Stream {self.name}: {name}={value!r} must be a number >= 0.")

    @property
    def name(self) -> str:
        base = self.remote or self.local or ""
        return f"{base}/{self.split}" if self.split else base

    def source_url(self) -> str:
        """Where the shards live (remote if given, else the local folder)."""
        base = (self.remote or self.local or "").rstrip("/")
        return f"{base}/{self.split}" if self.split else base

    def cache_folder(self) -> str:
        """Where downloaded (or decompressed) shards go: `local` when streaming from `remote`,
        else a folder under $TESSERA_CACHE (default ~/.cache/tessera) keyed by the source."""
        if self.remote is not None and self.local is not None:
            return os.path.join(self.local, self.split) if self.split else self.local
        key = hashlib.sha256(self.source_url().encode()).hexdigest()[:16]
        home = os.environ.get("TESSERA_CACHE", os.path.expanduser("~/.cache/tessera"))
        return os.path.join(home, "streams", key)


def samples_per_epoch(streams: list[Stream], sizes: list[int], epoch_size: int | None) -> list[int]:
    """How many samples each stream contributes to one epoch."""
    proportions = [s.proportion is not None for s in streams]
    if any(proportions) and not all(proportions) and epoch_size is None:
        raise DataError(
            "Some streams set `proportion` and others do not; give epoch_size, or a "
            "proportion for every stream."
        )
    counts: list[int | None] = []
    for stream, size in zip(streams, sizes):
        if stream.repeat is not None:
            counts.append(round(stream.repeat * size))
        elif stream.choose is not None:
            counts.append(int(stream.choose))
        elif stream.proportion is None:
            counts.append(size)
        else:
            counts.append(None)
    fixed = sum(c for c in counts if c is not None)
    total = epoch_size if epoch_size is not None else sum(sizes)
    weights = [s.proportion or 0.0 for s in streams if s.proportion is not None]
    if weights:
        share = max(total - fixed, 0)
        weight_sum = sum(weights) or 1.0
        quota = [share * s.proportion / weight_sum for s in streams if s.proportion is not None]
        rounded = [int(q) for q in quota]
        for i in sorted(range(len(quota)), key=lambda i: rounded[i] - quota[i])[
            : share - sum(rounded)
        ]:
            rounded[i] += 1  # largest remainders, so the counts add up to the share exactly
        it = iter(rounded)
        counts = [next(it) if c is None else c for c in counts]
    for stream, size, count in zip(streams, sizes, counts):
        if size == 0 and count:
            raise DataError(f"Stream {stream.name} has no samples but is asked for {count}.")
    return [int(c) for c in counts]  # type: ignore[arg-type]
