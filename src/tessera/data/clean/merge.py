"""The merge step: from every worker's scan arrays to one decision per document.

A document's global id is its position in the corpus (input files in order, documents in file
order); of each group of duplicates the lowest id, the first occurrence, is kept. Decisions go
to `fate/<file>.npy` (what happens to each document), `keeper/<file>.npy` (for a duplicate,
the id of the document it repeats) and, with segment dedup, `drop/<file>.npy` (which of the
file's lines/paragraphs repeat an earlier one). `merge.json` is written last.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from tessera.data.clean.config import CleanConfig
from tessera.data.clean.near import candidate_pairs, clusters, make_signer, similar
from tessera.data.clean.scan import EMPTY, LOCAL_DUPLICATE, _save, scan_paths
from tessera.data.storage import write_atomic

FATE_KEEP, FATE_EXACT, FATE_NEAR, FATE_EMPTY = 0, 1, 2, 3
FATE_FILTER = 100  # + the filter's position


def decision_paths(work: str, index: int) -> dict[str, str]:
    return {
        kind: os.path.join(work, kind, f"{index:05d}.npy") for kind in ("fate", "keeper", "drop")
    }


def _load(path: str, mmap: bool = False) -> np.ndarray:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def size_histogram(sizes: np.ndarray) -> dict[str, int]:
    """How many clusters have 2, 3, 4, 5-9, 10-99, 100+ members."""
    edges = [(2, 2), (3, 3), (4, 4), (5, 9), (10, 99), (100, None)]
    histogram = {}
    for low, high in edges:
        chosen = sizes >= low if high is None else (sizes >= low) & (sizes <= high)
        label = f"{low}+" if high is None else (str(low) if low == high else f"{low}-{high}")
        histogram[label] = int(chosen.sum())
    return histogram


def merge(config: CleanConfig, work: str, files: int) -> dict[str, Any]:
    """Decide every document's fate; returns (and writes) the merge statistics."""
    counts = []
    hashes, verdicts = [], []
    for index in range(files):
        paths = scan_paths(work, index)
        hashes.append(_load(paths["exact"]))
        verdicts.append(_load(paths["verdict"]))
        counts.append(len(hashes[-1]))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    exact = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    verdict = np.concatenate(verdicts) if verdicts else np.zeros(0, np.int16)
    del hashes, verdicts
    total = len(exact)
    fate = np.full(total, FATE_KEEP, dtype=np.int16)
    keeper = np.full(total, -1, dtype=np.int64)
    stats: dict[str, Any] = {"documents": total}

    fate[verdict == EMPTY] = FATE_EMPTY
    if config.dedup.exact:
        candidates = np.flatnonzero(verdict != EMPTY)
        _, first, inverse, sizes = np.unique(
            exact[candidates], return_index=True, return_inverse=True, return_counts=True
        )
        keeper_of = candidates[first][inverse]
        repeated = keeper_of != candidates
        fate[candidates[repeated]] = FATE_EXACT
        keeper[candidates[repeated]] = keeper_of[repeated]
        stats["exact_clusters"] = size_histogram(sizes[sizes > 1])
        stats["exact_largest_cluster"] = int(sizes.max()) if len(sizes) else 0
    filtered = (fate == FATE_KEEP) & (verdict >= 0)
    fate[filtered] = FATE_FILTER + verdict[filtered]
    assert not ((fate == FATE_KEEP) & (verdict == LOCAL_DUPLICATE)).any()

    if config.dedup.near:
        stats |= _near(config, work, files, offsets, fate, keeper)
    if config.dedup.segments != "none":
        stats["segments_removed"] = _segments(work, files, offsets, fate)
    for index in range(files):
        paths = decision_paths(work, index)
        _save(paths["fate"], fate[offsets[index] : offsets[index + 1]])
        _save(paths["keeper"], keeper[offsets[index] : offsets[index + 1]])
    write_atomic(os.path.join(work, "merge.json"), json.dumps(stats).encode(), durable=False)
    return stats


def _near(
    config: CleanConfig,
    work: str,
    files: int,
    offsets: np.ndarray,
    fate: np.ndarray,
    keeper: np.ndarray,
) -> dict[str, Any]:
    """Cluster the documents still kept by their signatures; mark all but the first."""
    signer = make_signer(config.near)
    ids, bands, signatures, selections = [], [], [], []
    for index in range(files):
        paths = scan_paths(work, index)
        rows = _load(paths["rows"])
        chosen = np.flatnonzero(fate[offsets[index] + rows] == FATE_KEEP)
        ids.append(offsets[index] + rows[chosen])
        selections.append(chosen)
        bands.append(_load(paths["bands"], mmap=True))
        signatures.append(_load(paths["signatures"], mmap=True))
    doc_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.cumsum([len(c) for c in selections])]).astype(np.int64)

    def rows_of(positions: np.ndarray) -> np.ndarray:
        """Signatures of eligible documents (by position), gathered file by file."""
        out = np.empty((len(positions), signer.num_perm), dtype=np.uint32)
        owner = np.searchsorted(starts, positions, side="right") - 1
        for index in np.unique(owner):
            mine = owner == index
            local = selections[index][positions[mine] - starts[index]]
            out[mine] = signatures[index][local]
        return out

    pairs: list[np.ndarray] = []
    for band in range(signer.bands):
        column = (
            np.concatenate([np.asarray(b[:, band])[c] for b, c in zip(bands, selections)])
            if bands
            else np.zeros(0, np.uint64)
        )
        first, other = candidate_pairs(column)
        pairs.append(first * len(doc_ids) + other)
    unique = np.unique(np.concatenate(pairs)) if pairs else np.zeros(0, np.int64)
    first, other = unique // max(len(doc_ids), 1), unique % max(len(doc_ids), 1)
    candidates = len(first)
    if config.near.verify and len(first):
        close = similar(first, other, rows_of, config.near.threshold)
        first, other = first[close], other[close]
    labels = clusters(len(doc_ids), first, other)
    sizes = np.bincount(labels) if len(labels) else np.zeros(0, np.int64)
    # the first member (lowest position = lowest id) of each cluster is kept
    order = np.argsort(labels, kind="stable")
    leaders = np.full(len(sizes), -1, dtype=np.int64)
    leader_positions = order[np.concatenate([[0], np.cumsum(sizes)[:-1]])] if len(sizes) else []
    leaders[labels[leader_positions]] = leader_positions
    removed = np.flatnonzero(leaders[labels] != np.arange(len(labels)))
    fate[doc_ids[removed]] = FATE_NEAR
    keeper[doc_ids[removed]] = doc_ids[leaders[labels[removed]]]
    return {
        "near_bands": signer.bands,
        "near_rows": signer.rows,
        "near_candidate_pairs": int(candidates),
        "near_verified_pairs": len(first),
        "near_clusters": size_histogram(sizes[sizes > 1]),
        "near_largest_cluster": int(sizes.max()) if len(sizes) else 0,
    }


def _segments(work: str, files: int, offsets: np.ndarray, fate: np.ndarray) -> int:
    """Mark every line/paragraph of a kept document that an earlier one already holds."""
    hashes, owners = [], []
    for index in range(files):
        paths = scan_paths(work, index)
        hashes.append(_load(paths["segments"]))
        owners.append(offsets[index] + _load(paths["segment_docs"]))
    every = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
    live = np.flatnonzero(fate[owner] == FATE_KEEP)
    _, first = np.unique(every[live], return_index=True)
    drop = np.zeros(len(every), dtype=bool)
    drop[live] = True
    drop[live[first]] = False
    bounds = np.concatenate([[0], np.cumsum([len(h) for h in hashes])]).astype(np.int64)
    for index in range(files):
        _save(decision_paths(work, index)["drop"], drop[bounds[index] : bounds[index + 1]])
    return int(drop.sum())


def fate_reasons(filter_names: list[str]) -> dict[int, str]:
    """Fate code -> the reason named in the report."""
    reasons = {FATE_EXACT: "exact_duplicate", FATE_NEAR: "near_duplicate", FATE_EMPTY: "empty"}
    reasons |= {FATE_FILTER + i: name for i, name in enumerate(filter_names)}
    return reasons


def load_decisions(work: str, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    paths = decision_paths(work, index)
    drop = _load(paths["drop"]) if os.path.exists(paths["drop"]) else None
    return _load(paths["fate"]), _load(paths["keeper"]), drop


def merge_done(work: str) -> dict[str, Any] | None:
    path = os.path.join(work, "merge.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as file:
        return json.load(file)
