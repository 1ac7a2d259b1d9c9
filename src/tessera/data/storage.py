"""Where a data set lives: a local folder or any fsspec URL (s3://, gs://, az://, https://).

Reads from remote storage are retried with exponential backoff; a missing file or refused
credentials are reported at once, naming the URL. Writes are atomic: a local file is written to
a temporary name, flushed and renamed; an object store receives each object in one PUT.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tessera.core.errors import DataError

logger = logging.getLogger(__name__)


class MissingFile(DataError):
    """A file that does not exist (locally, or on the object store)."""


_JITTER = random.Random()  # retry jitter never draws from the run's seeded global RNG
T = TypeVar("T")
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}


def is_remote(url: str) -> bool:
    """True for URLs with a scheme other than file://."""
    return "://" in url and not url.startswith("file://")


def write_atomic(path: str, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path` via a temporary file and a rename, so readers never see a partial
    file; with `durable`, flush it to disk before the rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp-", dir=folder)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        _remove_quietly(temporary)
        raise


class Storage:
    """A data set root (local folder or fsspec URL) with retried reads and atomic writes."""

    def __init__(
        self,
        url: str,
        storage_options: dict[str, Any] | None = None,
        retries: int = 5,
        backoff: float = 0.25,
    ):
        self.url = (
            url.rstrip("/") if is_remote(url) else os.path.abspath(url.removeprefix("file://"))
        )
        self.remote = is_remote(url)
        self.storage_options = dict(storage_options or {})
        self.retries = retries
        self.backoff = backoff
        self._fs: Any = None
        self._fs_pid = -1

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fs"], state["_fs_pid"] = None, -1  # each process opens its own connection pool
        return state

    @property
    def fs(self) -> Any:
        """The fsspec filesystem, made once per process (connection pools do not survive fork)."""
        if self._fs is None or self._fs_pid != os.getpid():
            import fsspec

            protocol = self.url.split("://", 1)[0]
            try:
                self._fs = fsspec.filesystem(
                    protocol, skip_instance_cache=True, **self.storage_options
                )
            except ImportError as error:
                extra = EXTRAS.get(protocol)
                hint = f"pip install 'tessera-train[{extra}]'" if extra else f"({error})"
                raise DataError(
                    f"Reading {self.url} needs the fsspec back-end for {protocol}://: {hint}."
                ) from None
            except ValueError as error:
                raise DataError(f"Cannot open storage {self.url}: {error}.") from None
            self._fs_pid = os.getpid()
        return self._fs

    def join(self, relative: str) -> str:
        """The full URL or path of a file under the root."""
        if self.remote:
            return f"{self.url}/{relative}"
        return os.path.join(self.url, *relative.split("/"))

    def read_bytes(self, relative: str, what: str = "file") -> bytes:
        """The bytes of a file under the root, retrying transient errors."""
        path = self.join(relative)
        if not self.remote:
            try:
                with open(path, "rb") as file:
                    return file.read()
            except FileNotFoundError:
                raise MissingFile(f"The {what} {path} does not exist.") from None
        return self._retry(lambda: self.fs.cat_file(path), path, what)

    def exists(self, relative: str) -> bool:
        path = self.join(relative)
        if not self.remote:
            return os.path.exists(path)
        return self._retry(lambda: self.fs.exists(path), path, "file")

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a file under the root atomically."""
        path = self.join(relative)
        if not self.remote:
            write_atomic(path, data)
            return
        self._retry(lambda: self.fs.pipe_file(path, data), path, "file")

    def put_file(self, local_path: str, relative: str) -> None:
        """Copy a finished local file under the root (atomically, as `write_bytes`)."""
        path = self.join(relative)
        if not self.remote:
            import shutil

            os.makedirs(os.path.dirname(path), exist_ok=True)
            temporary = f"{path}.tmp-{os.getpid()}"
            try:
                shutil.copyfile(local_path, temporary)
                os.replace(temporary, path)
            except BaseException:
                _remove_quietly(temporary)
                raise
            return
        self._retry(lambda: self.fs.put_file(local_path, path), path, "file")

    def remove(self, relative: str) -> None:
        path = self.join(relative)
        if not self.remote:
            _remove_quietly(path)
        elif self.exists(relative):
            self._retry(lambda: self.fs.rm_file(path), path, "file")

    def glob(self, pattern: str) -> list[str]:
        """Paths (relative to the root) matching a glob pattern."""
        import glob as globbing

        if not self.remote:
            base = self.url
            found = globbing.glob(os.path.join(base, pattern))
            return sorted(os.path.relpath(p, base).replace(os.sep, "/") for p in found)
        root = self.url.split("://", 1)[1]
        found = self._retry(lambda: self.fs.glob(f"{self.url}/{pattern}"), self.url, "folder")
        return sorted(p.split(root, 1)[1].lstrip("/") for p in found)

    def _retry(self, action: Callable[[], T], path: str, what: str) -> T:
        attempt = 0
        while True:
            try:
                return action()
            except FileNotFoundError:
                raise MissingFile(
                    f"The {what} {path} does not exist (or its bucket does not). Check the URL."
                ) from None
            except PermissionError as error:
                raise DataError(
                    f"Access to {path} was refused ({error}). Check the credentials (for S3: "
                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, or storage_options "
                    "key/secret) and the permissions on the bucket."
                ) from None
            except DataError:
                raise
            except Exception as error:  # network errors differ per back-end: retry them all
                if attempt >= self.retries:
                    raise DataError(
                        f"Could not read {path} after {attempt + 1} attempts; last error: "
                        f"{type(error).__name__}: {error}. Check that the storage is reachable."
                    ) from error
                delay = self.backoff * (2**attempt) * (0.5 + _JITTER.random())
                logger.warning(
                    "reading %s failed (%s: %s); retry %d/%d in %.2fs",
                    path, type(error).__name__, error, attempt + 1, self.retries, delay,
                )  # fmt: skip
                time.sleep(delay)
                attempt += 1


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
