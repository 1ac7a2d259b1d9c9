"""Checkpoints: the whole training state, written atomically and verified by checksum.

A checkpoint folder holds `ep<E>-ba<B>.pt` files and `manifest.json`, which lists each file with
its size, xxh3-128 checksum and timestamp. Files are written to a temporary name, fsynced and
renamed, and the manifest only names files that are complete, so a crash mid-write never
destroys the last good checkpoint. Loading uses `torch.load(weights_only=True)`: no pickled code.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import xxhash

from tessera.core.errors import CheckpointError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def file_checksum(path: Path) -> str:
    digest = xxhash.xxh3_128()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write through `write(file)` to a temporary file beside `path`, fsync, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, mode) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(folder: Path) -> None:
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


def read_manifest(folder: Path) -> list[dict[str, Any]]:
    path = folder / MANIFEST
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text())["checkpoints"]
    except (ValueError, KeyError) as error:
        raise CheckpointError(
            f"checkpoint manifest {path} is unreadable ({error}); delete it to start over, "
            "or restore it from a backup"
        ) from error
    return list(entries)


def _write_manifest(folder: Path, entries: list[dict[str, Any]]) -> None:
    text = json.dumps({"format_version": FORMAT_VERSION, "checkpoints": entries}, indent=2)
    atomic_write(folder / MANIFEST, lambda file: file.write(text), mode="w")


def save(
    state: dict[str, Any], folder: str | Path, name: str, keep_last: int | None = None
) -> Path:
    """Write one checkpoint atomically, record it in the manifest, apply retention."""
    folder = Path(folder)
    path = folder / name
    try:
        atomic_write(path, lambda file: torch.save(state, file))
    except OSError as error:
        raise CheckpointError(
            f"cannot write checkpoint {path}: {error.strerror or error}; check that the folder "
            "is writable and the disk has space (the previous checkpoints are untouched)"
        ) from error
    entries = [entry for entry in read_manifest(folder) if entry["file"] != name]
    timestamp = state.get("timestamp", {})
    entries.append(
        {
            "file": name,
            "bytes": path.stat().st_size,
            "xxh3_128": file_checksum(path),
            "epoch": timestamp.get("epoch"),
            "batch": timestamp.get("batch"),
        }
    )
    if keep_last is not None and keep_last > 0:
        for old in entries[:-keep_last]:
            (folder / old["file"]).unlink(missing_ok=True)
        entries = entries[-keep_last:]
    _write_manifest(folder, entries)
    return path


def verify(folder: Path, entry: dict[str, Any]) -> str | None:
    """None if the checkpoint file matches its manifest entry, else what is wrong."""
    path = folder / entry["file"]
    if not path.exists():
        return f"{path} is missing"
    size = path.stat().st_size
    if size != entry["bytes"]:
        return f"{path} has {size} bytes, the manifest says {entry['bytes']} (truncated?)"
    if file_checksum(path) != entry["xxh3_128"]:
        return f"{path} does not match its checksum (corrupt)"
    return None


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file, verifying it against its folder's manifest when there is one."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    entry = next((e for e in read_manifest(path.parent) if e["file"] == path.name), None)
    if entry is not None:
        problem = verify(path.parent, entry)
        if problem:
            raise CheckpointError(f"checkpoint {problem}; use an earlier checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(error).__name__}: {error}); it may be "
            "truncated or not a Tessera checkpoint"
        ) from error
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} is not a Tessera checkpoint of format {FORMAT_VERSION}"
        )
    return state


def latest_valid(folder: str | Path) -> Path | None:
    """The newest checkpoint in `folder` that verifies; warns about each newer one that fails."""
    folder = Path(folder)
    for entry in reversed(read_manifest(folder)):
        problem = verify(folder, entry)
        if problem is None:
            return folder / entry["file"]
        warnings.warn(
            f"skipping checkpoint: {problem}; falling back to the previous one", stacklevel=2
        )
    return None


def checkpoint_name(epoch: int, batch: int) -> str:
    return f"ep{epoch}-ba{batch}.pt"
