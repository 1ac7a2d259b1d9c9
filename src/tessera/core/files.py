"""Durable files: atomic writes (temporary file, fsync, rename) and content checksums.

A crash or a full disk mid-write leaves the previous file in place, never a half-written one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xxhash


def file_checksum(path: Path) -> str:
    """The xxh3-128 digest of a file's bytes (fast enough to check every checkpoint)."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write through `write(file)` to a temporary file beside `path`, fsync, then rename."""

    def into(temporary: Path) -> None:
        with open(temporary, mode, encoding=None if "b" in mode else "utf-8") as file:
            write(file)

    atomic_write_path(path, into)


def atomic_write_path(path: Path, write: Callable[[Path], None]) -> None:
    """`write(temporary_path)` fills a file beside `path`; it is fsynced and renamed into place
    (for writers that take a path, such as `safetensors.torch.save_file`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda file: file.write(text), mode="w")


def fsync_directory(folder: Path) -> None:
    """Make a rename inside `folder` durable (best effort: not every file system allows it)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
