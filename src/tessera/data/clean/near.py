"""Near-duplicate detection: MinHash signatures of word shingles, LSH bands, clusters.

Signatures are datasketch's MinHash (its seeded "affine32" permutations, so every worker
computes the same ones), applied to a document's whole array of shingle hashes at once; the
number of bands and rows per band is datasketch's optimum for the threshold (`MinHashLSH`'s
weighting of false positives and negatives), tilted towards recall because every candidate
pair is then checked on its whole signature. Instead of an in-memory LSH index, each worker
stores one 64-bit hash per band and document, and the merge step sorts each band's column
across all workers: documents that share a band value are candidate pairs, checked against
the threshold on their full signatures and joined into clusters (connected components).
Memory in the merge is a few bytes per document and band, never the text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tessera.core.errors import ConfigError
from tessera.data.clean.document import Document, mix64


def _datasketch():
    try:
        import datasketch
    except ImportError:
        raise ConfigError(
            "near-duplicate removal needs datasketch: pip install 'tessera-train[clean]' (or "
            "leave out near dedup: --dedup exact)."
        ) from None
    return datasketch


@lru_cache(maxsize=8)
def band_layout(threshold: float, num_perm: int, recall_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows per band) that datasketch's LSH chooses for this threshold, weighing
    missed pairs (false negatives) by `recall_weight` against spurious candidates."""
    weights = (1.0 - recall_weight, recall_weight)
    lsh = _datasketch().MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    return int(lsh.b), int(lsh.r)


@dataclass
class Signer:
    """Computes one document's MinHash signature and band hashes."""

    num_perm: int
    seed: int
    shingle_words: int
    bands: int
    rows: int

    def __post_init__(self) -> None:
        template = _datasketch().MinHash(self.num_perm, seed=self.seed, scheme="affine32")
        # datasketch's affine32 permutations h -> a * h + b (mod 2^32), a odd, seeded
        self._a, self._b = (np.asarray(p, dtype=np.uint32) for p in template.permutations)
        multipliers = mix64(np.arange(1, self.rows + 1, dtype=np.uint64))
        self._multipliers = multipliers | np.uint64(1)

    def signature(self, document: Document) -> np.ndarray:
        """uint32[num_perm]: the MinHash of the document's set of word shingles.

        The same values as `datasketch.MinHash(scheme="affine32").update_batch(shingles)`
        (tests check it), computed on the whole array at once: datasketch calls its hash
        function once per shingle in Python, which costs more than the rest of the scan."""
        shingles = document.ngram_hashes(self.shingle_words)
        folded = ((shingles >> np.uint64(32)) ^ shingles).astype(np.uint32)
        mixed = fmix32(folded)
        if not len(mixed):
            return np.full(self.num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
        return (mixed[:, None] * self._a + self._b).min(axis=0)

    def band_hashes(self, signatures: np.ndarray) -> np.ndarray:
        """uint64[documents, bands]: one hash of each band's rows of the signatures."""
        used = signatures[:, : self.bands * self.rows].astype(np.uint64)
        grouped = used.reshape(len(signatures), self.bands, self.rows)
        combined = (grouped * self._multipliers).sum(axis=2, dtype=np.uint64)
        combined += np.arange(self.bands, dtype=np.uint64)  # band j never matches band k
        return mix64(combined)


def fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (datasketch's pre-mix before the permutations)."""
    values = values ^ (values >> np.uint32(16))
    values = values * np.uint32(0x85EBCA6B)
    values = values ^ (values >> np.uint32(13))
    values = values * np.uint32(0xC2B2AE35)
    return values ^ (values >> np.uint32(16))


def make_signer(near: object) -> Signer:
    bands, rows = band_layout(near.threshold, near.num_perm, near.recall_weight)  # type: ignore[attr-defined]
    return Signer(near.num_perm, near.seed, near.shingle_words, bands, rows)  # type: ignore[attr-defined]


def candidate_pairs(band_column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (first, other) of rows sharing a value in one band: every row of a bucket is
    paired with the bucket's first (lowest) row, which is enough for connected components."""
    order = np.argsort(band_column, kind="stable")
    values = band_column[order]
    same = np.flatnonzero(values[1:] == values[:-1]) + 1
    if not len(same):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    starts = np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))
    bucket_first = order[starts[np.searchsorted(starts, same, side="right") - 1]]
    return bucket_first.astype(np.int64), order[same].astype(np.int64)


def similar(
    first: np.ndarray,
    other: np.ndarray,
    signatures: Callable[[np.ndarray], np.ndarray],
    threshold: float,
    chunk: int = 65536,
) -> np.ndarray:
    """Which pairs' estimated Jaccard similarity (equal signature slots) reaches `threshold`."""
    keep = np.zeros(len(first), dtype=bool)
    for start in range(0, len(first), chunk):
        a = signatures(first[start : start + chunk])
        b = signatures(other[start : start + chunk])
        keep[start : start + chunk] = (a == b).mean(axis=1) >= threshold
    return keep


def clusters(count: int, first: Sequence[int], other: Sequence[int]) -> np.ndarray:
    """The component label of each of `count` rows, given the pairs that join them."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix(
        (np.ones(len(first), dtype=np.int8), (np.asarray(first), np.asarray(other))),
        shape=(count, count),
    )
    _, labels = connected_components(graph, directed=False)
    return labels
