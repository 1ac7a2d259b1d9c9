"""A cache of tokenized text, so a run on raw text files tokenizes each corpus once.

`data: {text: FILE}` tokenizes at start-up. The encoded documents (every token, each document's
length and prompt length) are kept in `.tessera-cache/` beside the first input file, named by
a hash of what decides them: every input file's bytes, the tokenizer and the fields read from
JSONL. A changed file or tokenizer gives another name, so a stale entry is never read. Where
the data folder is read-only the cache goes to `$TESSERA_HOME/cache/text` (default
`~/.tessera/cache/text`), and the run says where it wrote.

Processes that start together (ranks of one job, workers) take a file lock first: one
tokenizes and writes, the others wait and read its file. Entries are `.npz` arrays written
atomically and read with `allow_pickle=False`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from tessera.core.files import atomic_write
from tessera.data.text.packing import EncodedDocument

log = logging.getLogger(__name__)

CACHE_FOLDER = ".tessera-cache"
VERSION = 1


def encoding_key(files: Sequence[str | Path], tokenizer: dict[str, Any], **options: Any) -> str:
    """A hash of the input files' bytes, the tokenizer and the reading options."""
    digest = xxhash.xxh3_128()
    head = {"version": VERSION, "tokenizer": tokenizer, "options": options}
    digest.update(json.dumps(head, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    for name in files:
        digest.update(b"\0file\0")
        with open(name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def cache_folders(files: Sequence[str | Path]) -> list[Path]:
    """Where entries may live, in order: beside the first input, then `$TESSERA_HOME`."""
    home = Path(os.environ.get("TESSERA_HOME") or Path.home() / ".tessera").expanduser()
    return [Path(files[0]).resolve().parent / CACHE_FOLDER, home / "cache" / "text"]


def cached_encoding(
    files: Sequence[str | Path],
    tokenizer: dict[str, Any],
    encode: Callable[[], list[EncodedDocument]],
    **options: Any,
) -> list[EncodedDocument]:
    """The encoded documents of `files`: read from the cache, or `encode()`d and stored."""
    name = f"tokens-{encoding_key(files, tokenizer, **options)}.npz"
    folders = cache_folders(files)
    for folder in folders:
        if (folder / name).is_file():
            return _read(folder / name)
    for folder in folders:
        if not _writable(folder):
            continue
        with _locked(folder / f"{name}.lock"):
            if (folder / name).is_file():  # another process wrote it while we waited
                return _read(folder / name)
            documents = encode()
            _write(folder / name, documents)
        where = (
            "the data folder" if folder == folders[0] else "$TESSERA_HOME (data folder read-only)"
        )
        log.info("tokenized text cached in %s: %s", where, folder / name)
        return documents
    log.warning(
        "tokenized text not cached: neither %s nor %s is writable; every run tokenizes again",
        *folders,
    )
    return encode()


def _writable(folder: Path) -> bool:
    """Whether we may write in `folder` (made if missing). A folder whose mode has no write
    bit at all counts as read-only even for root, who could write there anyway."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.stat().st_mode & 0o222:
        return False
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # no POSIX locks (Windows): the atomic rename still keeps files whole
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write(path: Path, documents: list[EncodedDocument]) -> None:
    lengths = np.array([len(d.tokens) for d in documents], dtype=np.int64)
    prompts = np.array([d.prompt_length for d in documents], dtype=np.int64)
    parts = [np.asarray(d.tokens, dtype=np.int64) for d in documents]
    tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    largest = int(tokens.max()) if tokens.size else 0
    tokens = tokens.astype(np.uint16 if largest < 2**16 else np.uint32)
    atomic_write(path, lambda file: np.savez(file, tokens=tokens, lengths=lengths, prompts=prompts))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # a plain file's mode (the temporary file was private)


def _read(path: Path) -> list[EncodedDocument]:
    with np.load(path, allow_pickle=False) as entry:
        tokens = entry["tokens"].astype(np.int64)
        lengths, prompts = entry["lengths"], entry["prompts"]
    ends = np.cumsum(lengths)
    starts = ends - lengths
    return [
        EncodedDocument(tokens[start:end], int(prompt))
        for start, end, prompt in zip(starts, ends, prompts)
    ]
