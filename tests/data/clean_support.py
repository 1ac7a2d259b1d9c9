"""Shared pieces of the clean tests: writing a corpus as JSONL files, reading a clean's output."""

from __future__ import annotations

import json
from pathlib import Path

import zstandard


def write_jsonl(folder: Path, documents: list[str], files: int = 3) -> Path:
    """Document i goes to file i % files, as record i // files (so it can be found again)."""
    folder.mkdir(parents=True, exist_ok=True)
    for part in range(files):
        with open(folder / f"{part:02d}.jsonl", "w", encoding="utf-8") as handle:
            for text in documents[part::files]:
                handle.write(json.dumps({"text": text}) + "\n")
    return folder


def output_records(out: Path) -> list[dict]:
    """Every record of a clean's output, in part order."""
    records = []
    for part in sorted(out.glob("part-*.jsonl.zst")):
        with zstandard.open(part, "rt", encoding="utf-8") as handle:
            records.extend(json.loads(line) for line in handle)
    return records


def kept_indices(out: Path, files: int = 3) -> set[int]:
    """Indices (as given to `write_jsonl`) of the documents a clean kept."""
    kept = set()
    for record in output_records(out):
        part = int(Path(record["source"]).stem)
        kept.add(part + files * record["record"])
    return kept


def part_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("part-*"))}
