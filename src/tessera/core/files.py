"""Durable files: atomic writes (temporary file, fsync, rename), content checksums, and the
one error for a file that cannot be written.

A crash or a full disk mid-write leaves the previous file in place, never a half-written one.
`writing(what, path)` turns a failed write (a full disk, a missing permission, a read-only
file system) into a `WriteError`: exit code 2, one paragraph naming the file and the reason,
saying that what was written before is intact and that running the command again resumes.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import xxhash

from tessera.core.errors import UserError

RERUN = (
    "Every file written before is intact (each is written under a temporary name and renamed "
    "only once complete): free some space, or choose another run_dir, and run the same "
    "command again to resume from the newest complete checkpoint"
)
# How libraries that are not Python's own I/O (safetensors, SQLite, DCP) report a full disk.
_FULL = ("No space left", "StorageFull", "os error 28", "disk is full", "quota exceeded")


class WriteError(UserError):
    """A file that could not be written: a full disk, a missing permission."""


def write_failure(error: BaseException) -> str | None:
    """Why a write failed, in words, when `error` (or what it wraps) is a storage failure."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            if seen.errno in (errno.ENOSPC, errno.EDQUOT):
                return "the disk is full"
            if seen.errno == errno.EFBIG:
                return "the file would be larger than this system allows"
            return seen.strerror or str(seen)
        text = str(seen)
        if any(marker in text for marker in _FULL):
            return "the disk is full"
        for failure in (getattr(seen, "failures", None) or {}).values():  # DCP, per rank
            inner = failure[0] if isinstance(failure, tuple) else failure
            if isinstance(inner, BaseException) and (reason := write_failure(inner)):
                return reason
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def writing(what: str, path: str | Path, after: str = RERUN) -> Iterator[None]:
    """Turn a storage failure inside the block into a WriteError about `what` at `path`."""
    try:
        yield
    except UserError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # also DCP's CheckpointException, a BaseException
        reason = write_failure(error)
        if reason is None:
            raise
        raise WriteError(f"cannot write {what} {path}: {reason}. {after}") from None


def file_checksum(path: Path) -> str:
    """The xxh3-128 digest of a file's bytes (fast enough to check every checkpoint)."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(
    path: Path,
    write: Callable[[Any], None],
    mode: str = "wb",
    before_rename: Callable[[Path], None] | None = None,
) -> None:
    """Write through `write(file)` to a temporary file beside `path`, fsync, then rename;
    `before_rename(temporary)` runs on the complete file just before it takes its name."""

    def into(temporary: Path) -> None:
        with open(temporary, mode, encoding=None if "b" in mode else "utf-8") as file:
            write(file)

    atomic_write_path(path, into, before_rename)


def atomic_write_path(
    path: Path,
    write: Callable[[Path], None],
    before_rename: Callable[[Path], None] | None = None,
) -> None:
    """`write(temporary_path)` fills a file beside `path`; it is fsynced and renamed into place
    (for writers that take a path, such as `safetensors.torch.save_file`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        if before_rename is not None:
            before_rename(Path(temporary))
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
