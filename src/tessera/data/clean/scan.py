"""Pass 1 of a clean, one input file at a time (in parallel across workers): read each
document once and record what the global merge needs, as arrays under the work folder.

Per document: the exact hash of its normalised text and its quality verdict (the first filter
that rejects it); for documents that pass, the MinHash signature and band hashes; with
segment dedup, the hash of every line or paragraph. The file's JSON summary is written last,
so a scan killed midway is redone on resume and one that finished is never repeated.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any

import numpy as np

from tessera.data.clean.config import CleanConfig
from tessera.data.clean.document import Document, text_hash
from tessera.data.clean.filters import resolve_filters
from tessera.data.clean.readers import InputFile, ReadStats, read_documents
from tessera.data.storage import write_atomic

KEEP = -1  # quality verdict: passed every filter
EMPTY = -2  # no words at all
LOCAL_DUPLICATE = -3  # exact copy of an earlier document in the same file (not analysed)


def segments(text: str, unit: str) -> list[str]:
    """The lines or paragraphs that segment dedup compares (stripped, in order)."""
    if unit == "line":
        return [line.strip() for line in text.splitlines()]
    return [block.strip() for block in text.replace("\r\n", "\n").split("\n\n")]


def scan_paths(work: str, index: int) -> dict[str, str]:
    base = os.path.join(work, "scan", f"{index:05d}")
    names = ("summary.json", "exact.npy", "verdict.npy", "rows.npy", "bands.npy", "signatures.npy")
    paths = {name.split(".")[0]: f"{base}.{name}" for name in names}
    paths |= {"segments": f"{base}.segments.npy", "segment_docs": f"{base}.segment_docs.npy"}
    return paths


def _save(path: str, array: np.ndarray) -> None:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    write_atomic(path, buffer.getvalue(), durable=False)


def scan_file(
    index: int,
    source: InputFile,
    config: CleanConfig,
    work: str,
    storage_options: dict[str, Any] | None = None,
    modules: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Scan one input file; returns (and writes) its summary. `modules` register user filters
    (imported first, for worker processes)."""
    import importlib

    for module in modules:
        importlib.import_module(module)
    paths = scan_paths(work, index)
    filters = [check for _, _, check in resolve_filters(config.quality)]
    signer = None
    if config.dedup.near:
        from tessera.data.clean.near import make_signer

        signer = make_signer(config.near)
    segment_unit = config.dedup.segments
    stats = ReadStats()
    exact: list[int] = []
    verdicts: list[int] = []
    rows: list[int] = []
    signatures: list[np.ndarray] = []
    segment_hashes: list[int] = []
    segment_docs: list[int] = []
    seen: set[int] = set()
    tokens = characters = 0
    for number, text in enumerate(read_documents(source, config.reader, stats, storage_options)):
        document = Document(text)
        tokens += len(document.tokens)
        characters += len(text)
        digest = document.exact_hash
        exact.append(digest)
        if segment_unit != "none":
            for piece in segments(text, segment_unit):
                if len(piece) >= config.dedup.segment_min_chars:
                    segment_hashes.append(text_hash(piece))
                    segment_docs.append(number)
        if not document.words:
            verdicts.append(EMPTY)
            continue
        if config.dedup.exact and digest in seen:
            verdicts.append(LOCAL_DUPLICATE)
            continue
        seen.add(digest)
        verdicts.append(_verdict(document, filters))
        if signer is not None and verdicts[-1] == KEEP:
            rows.append(number)
            signatures.append(signer.signature(document))
    _save(paths["exact"], np.asarray(exact, dtype=np.uint64))
    _save(paths["verdict"], np.asarray(verdicts, dtype=np.int16))
    if signer is not None:
        matrix = np.stack(signatures) if signatures else np.zeros((0, signer.num_perm), np.uint32)
        _save(paths["rows"], np.asarray(rows, dtype=np.int64))
        _save(paths["bands"], signer.band_hashes(matrix))
        _save(paths["signatures"], matrix)
    if segment_unit != "none":
        _save(paths["segments"], np.asarray(segment_hashes, dtype=np.uint64))
        _save(paths["segment_docs"], np.asarray(segment_docs, dtype=np.int64))
    summary = {
        "index": index,
        "url": source.url,
        "documents": len(exact),
        "tokens": tokens,
        "characters": characters,
        **asdict(stats),
    }
    write_atomic(paths["summary"], json.dumps(summary).encode(), durable=False)
    return summary


def _verdict(document: Document, filters: list[Any]) -> int:
    for position, check in enumerate(filters):
        if not check(document):
            return position
    return KEEP


def load_summary(work: str, index: int) -> dict[str, Any] | None:
    path = scan_paths(work, index)["summary"]
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as file:
        return json.load(file)
