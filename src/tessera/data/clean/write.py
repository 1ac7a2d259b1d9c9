"""Pass 2 of a clean, one input file at a time: read the documents again, apply the merge's
decisions, remove repeated lines/paragraphs, find personal data, and write the survivors.

Input file N becomes `part-N.jsonl.zst` (JSON lines `{"text": ..., "source": ..., "record": ...}`)
written to a temporary file and moved into the output folder complete; its summary (counts per
reason, examples of removed documents, the part's size and hash) is written to the work folder
after it, so a part is either finished or redone on resume.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from functools import lru_cache
from typing import IO, Any

import numpy as np

from tessera.data.clean.config import CleanConfig
from tessera.data.clean.document import Document
from tessera.data.clean.merge import FATE_KEEP, load_decisions
from tessera.data.clean.pii import find_pii, redact
from tessera.data.clean.readers import InputFile, ReadStats, read_documents
from tessera.data.clean.scan import load_summary
from tessera.data.provenance import file_hash
from tessera.data.storage import Storage, write_atomic

SUFFIX = {"zstd": ".jsonl.zst", "gzip": ".jsonl.gz", "none": ".jsonl"}
SAMPLE_CHARS = 600


class DocumentNames:
    """Turns a global document id into 'file#record' for the report."""

    def __init__(self, names: list[str], counts: list[int]) -> None:
        self.names = names
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __call__(self, document: int) -> str:
        index = int(np.searchsorted(self.offsets, document, side="right") - 1)
        return f"{self.names[index]}#{document - int(self.offsets[index])}"


def document_names(work: str) -> DocumentNames:
    """The inputs (from the clean's settings) and their document counts (from the scans),
    read once per process and clean."""
    settings = os.path.join(work, "settings.json")
    return _document_names(work, os.stat(settings).st_mtime_ns)


@lru_cache(maxsize=4)
def _document_names(work: str, stamp: int) -> DocumentNames:
    with open(os.path.join(work, "settings.json"), encoding="utf-8") as file:
        names = [url for url, _ in json.load(file)["inputs"]]
    counts = [load_summary(work, index)["documents"] for index in range(len(names))]  # type: ignore[index]
    return DocumentNames(names, counts)


def part_name(index: int, compression: str) -> str:
    return f"part-{index:05d}{SUFFIX[compression]}"


def part_summary_path(work: str, index: int) -> str:
    return os.path.join(work, "parts", f"{index:05d}.json")


def _open_writer(path: str, compression: str) -> tuple[IO[bytes], IO[bytes]]:
    raw = open(path, "wb")  # noqa: SIM115 (closed by write_file)
    if compression == "zstd":
        import zstandard

        return raw, zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False)
    if compression == "gzip":  # no name or time in the header: the same input, the same bytes
        return raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)  # type: ignore[return-value]
    return raw, raw


def _remove_segments(
    text: str, unit: str, minimum: int, drop: Any, position: int
) -> tuple[str, int]:
    """The text without the lines/paragraphs the merge marked; returns (text, next position).
    Walks the same pieces, in the same order, as the scan did."""
    if unit == "line":
        pieces, joiner = text.splitlines(keepends=True), ""
    else:
        pieces, joiner = text.replace("\r\n", "\n").split("\n\n"), "\n\n"
    kept = []
    for piece in pieces:
        if len(piece.strip()) >= minimum:
            dropped = drop is not None and bool(drop[position])
            position += 1
            if dropped:
                continue
        kept.append(piece)
    return joiner.join(kept), position


def write_file(
    index: int,
    source: InputFile,
    config: CleanConfig,
    work: str,
    out: Storage,
    reasons: dict[int, str],
    source_name: str,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write one part; returns (and saves) its summary."""
    fate, keeper, drop = load_decisions(work, index)
    document_ref = document_names(work)
    compression = config.output.compression
    name = part_name(index, compression)
    staging = os.path.join(work, "staging")
    os.makedirs(staging, exist_ok=True)
    temporary = os.path.join(staging, f"{name}.tmp-{os.getpid()}")
    removed: dict[str, Counter[str]] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    pii_counts: Counter[str] = Counter()
    kept = Counter()
    unit, minimum = config.dedup.segments, config.dedup.segment_min_chars
    position = 0
    pii_mode, kinds = config.pii.mode, config.pii.kinds

    def remove(reason: str, number: int, text: str, duplicate_of: int = -1) -> None:
        totals = removed.setdefault(reason, Counter())
        totals["documents"] += 1
        totals["tokens"] += len(text.split())
        totals["characters"] += len(text)
        examples = samples.setdefault(reason, [])
        if len(examples) < config.output.samples_per_reason:
            example = {"document": f"{source_name}#{number}", "text": text[:SAMPLE_CHARS]}
            if duplicate_of >= 0:
                example["duplicate_of"] = document_ref(duplicate_of)
            examples.append(example)

    raw, writer = _open_writer(temporary, compression)
    try:
        stats = ReadStats()
        for number, text in enumerate(
            read_documents(source, config.reader, stats, storage_options)
        ):
            code = int(fate[number])
            if unit != "none":
                original = text
                text, position = _remove_segments(text, unit, minimum, drop, position)
                if code == FATE_KEEP and not Document(text).words:
                    remove("segments_emptied", number, original)
                    continue
            if code != FATE_KEEP:
                remove(reasons[code], number, text, int(keeper[number]))
                continue
            if pii_mode != "off":
                if pii_mode == "redact":
                    text, found = redact(text, kinds)
                else:
                    found = Counter(kind for _, _, kind in find_pii(text, kinds))
                pii_counts.update(found)
                if pii_mode == "remove" and found:
                    remove("pii", number, text)
                    continue
            record = {"text": text, "source": source_name, "record": number}
            writer.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
            kept["documents"] += 1
            kept["tokens"] += len(text.split())
            kept["characters"] += len(text)
        if writer is not raw:
            writer.close()
        raw.flush()
        os.fsync(raw.fileno())
    finally:
        raw.close()
    entry = {"path": name, "bytes": os.path.getsize(temporary), "hash": file_hash(temporary)}
    out.put_file(temporary, name) if out.remote else os.replace(temporary, out.join(name))
    if os.path.exists(temporary):
        os.remove(temporary)
    summary = {
        "index": index,
        "file": entry,
        "kept": dict(kept),
        "removed": {reason: dict(values) for reason, values in removed.items()},
        "samples": samples,
        "pii": dict(pii_counts),
    }
    write_atomic(part_summary_path(work, index), json.dumps(summary).encode(), durable=False)
    return summary


def load_part_summary(work: str, index: int) -> dict[str, Any] | None:
    path = part_summary_path(work, index)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as file:
        return json.load(file)
