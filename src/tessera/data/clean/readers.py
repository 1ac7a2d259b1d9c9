"""Input files: find them (files, folders, globs; local or any fsspec URL) and stream their
documents (plain text, JSONL, Parquet; gzip or zstd compressed), never holding a file whole
unless one document is the whole file.

Bytes that are not UTF-8 are skipped and reported with the file and byte offset (in the
decompressed stream); a JSONL record without the text field is an error naming the field,
the file and the line.
"""

from __future__ import annotations

import glob as globbing
import gzip
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import xxhash

from tessera.core.errors import DataError
from tessera.data.storage import is_remote

COMPRESSION = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
MAX_REPORTED_OFFSETS = 20


@dataclass(frozen=True)
class InputFile:
    url: str
    size: int


@dataclass
class ReadStats:
    """What reading one file found: bytes, skipped undecodable bytes and where they were."""

    raw_bytes: int = 0
    content_hash: str | None = None
    undecodable_bytes: int = 0
    undecodable_offsets: list[int] = field(default_factory=list)  # where each bad run starts

    def __post_init__(self) -> None:
        self._run_end = -1

    def skipped(self, offset: int, count: int) -> None:
        self.undecodable_bytes += count
        if offset != self._run_end and len(self.undecodable_offsets) < MAX_REPORTED_OFFSETS:
            self.undecodable_offsets.append(offset)
        self._run_end = offset + count


def _filesystem(url: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError as error:
        raise DataError(
            f"reading {url} needs the fsspec back-end for its scheme ({error}); for S3: "
            "pip install 'tessera-train[s3]'."
        ) from None


def _is_hidden(path: str) -> bool:
    return any(part.startswith((".", "_")) for part in path.replace("\\", "/").split("/") if part)


def list_inputs(
    inputs: list[str], storage_options: dict[str, Any] | None = None
) -> list[InputFile]:
    """Every input file, in a fixed order (each argument in turn, its files sorted by path).
    Folders are searched recursively; names starting with '.' or '_' are left out."""
    found: list[InputFile] = []
    for spec in inputs:
        matches = _remote_files(spec, storage_options) if is_remote(spec) else _local_files(spec)
        if not matches:
            raise DataError(
                f"input {spec!r} matches no file; give files, folders or glob patterns "
                "(e.g. 'corpus/**/*.jsonl.gz')."
            )
        found.extend(matches)
    unique: dict[str, InputFile] = {}  # a file named twice is read once
    for entry in found:
        unique.setdefault(entry.url, entry)
    return list(unique.values())


def _local_files(spec: str) -> list[InputFile]:
    spec = spec.removeprefix("file://")
    if any(c in spec for c in "*?["):
        paths = sorted(p for p in globbing.glob(spec, recursive=True) if os.path.isfile(p))
    elif os.path.isdir(spec):
        paths = sorted(
            os.path.join(root, name)
            for root, folders, names in os.walk(spec)
            for name in names
            if not _is_hidden(os.path.relpath(os.path.join(root, name), spec))
        )
    elif os.path.isfile(spec):
        paths = [spec]
    else:
        raise DataError(f"input {spec!r} does not exist (no such file or folder).")
    return [InputFile(os.path.abspath(p), os.path.getsize(p)) for p in paths]


def _remote_files(spec: str, storage_options: dict[str, Any] | None) -> list[InputFile]:
    fs, path = _filesystem(spec, storage_options)
    protocol = spec.split("://", 1)[0]
    base = path.rstrip("/")  # hidden names are looked for below it
    try:
        if any(c in path for c in "*?["):
            details = fs.glob(path, detail=True)
            base = re.split(r"[*?\[]", path, maxsplit=1)[0].rsplit("/", 1)[0]
        elif fs.isdir(path):
            details = fs.find(path, detail=True)
        else:
            details = {path: fs.info(path)}
            base = path.rsplit("/", 1)[0]
    except FileNotFoundError:
        raise DataError(f"input {spec!r} does not exist (or its bucket does not).") from None
    files = []
    for name, info in sorted(details.items()):
        if info.get("type") == "directory" or _is_hidden(name[len(base) :]):
            continue
        files.append(InputFile(f"{protocol}://{name}", int(info.get("size") or 0)))
    return files


def input_format(url: str, configured: str) -> str:
    if configured != "auto":
        return configured
    name = url.lower()
    for suffix in COMPRESSION:
        name = name.removesuffix(suffix)
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    return "text"


class _HashingReader(io.RawIOBase):
    """Passes a binary stream through, hashing and counting the bytes read."""

    def __init__(self, inner: IO[bytes], stats: ReadStats) -> None:
        self.inner, self.stats = inner, stats
        self.digest = xxhash.xxh3_128()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        buffer[: len(data)] = data
        self.digest.update(data)
        self.stats.raw_bytes += len(data)
        return len(data)

    def finish(self) -> None:
        self.stats.content_hash = "xxh3-128:" + self.digest.hexdigest()


def _open_raw(url: str, storage_options: dict[str, Any] | None) -> IO[bytes]:
    if not is_remote(url):
        return open(url, "rb")
    fs, path = _filesystem(url, storage_options)
    return fs.open(path, "rb", block_size=4 << 20)


def decode(data: bytes, offset: int, stats: ReadStats) -> str:
    """UTF-8 text of `data`; undecodable bytes are dropped and reported (offset: of `data`'s
    first byte in the file's decompressed stream)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    pieces, position = [], 0
    while position < len(data):
        try:
            pieces.append(data[position:].decode("utf-8"))
            break
        except UnicodeDecodeError as error:
            pieces.append(data[position : position + error.start].decode("utf-8"))
            stats.skipped(offset + position + error.start, error.end - error.start)
            position += error.end
    return "".join(pieces)


def read_documents(
    source: InputFile,
    reader: Any,
    stats: ReadStats,
    storage_options: dict[str, Any] | None = None,
) -> Iterator[str]:
    """The texts of one file's documents, in order; `stats` is filled in as it goes."""
    kind = input_format(source.url, reader.format)
    if kind == "parquet":
        yield from _parquet(source.url, reader.text_field, stats, storage_options)
        return
    raw = _open_raw(source.url, storage_options)
    hashing = _HashingReader(raw, stats)
    try:
        stream: IO[bytes] = io.BufferedReader(hashing, buffer_size=1 << 20)
        compression = next((c for s, c in COMPRESSION.items() if source.url.endswith(s)), None)
        if compression == "gzip":
            stream = gzip.GzipFile(fileobj=stream)  # type: ignore[assignment]
        elif compression == "zstd":
            import zstandard

            stream = io.BufferedReader(
                zstandard.ZstdDecompressor().stream_reader(stream), buffer_size=1 << 20
            )  # type: ignore[assignment]
        try:
            if kind == "jsonl":
                yield from _jsonl(stream, source.url, reader.text_field, stats)
            else:
                yield from _text(stream, reader.text_unit, stats)
        except (OSError, EOFError) as error:
            if isinstance(error, FileNotFoundError):
                raise
            raise DataError(f"{source.url}: cannot be read ({error}); is it truncated?") from None
        hashing.finish()
    finally:
        raw.close()


def _jsonl(stream: IO[bytes], url: str, field_name: str, stats: ReadStats) -> Iterator[str]:
    offset = 0
    for number, line in enumerate(stream, 1):
        text = decode(line, offset, stats)
        offset += len(line)
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{url}:{number}: not valid JSON ({error.msg}).") from None
        if not isinstance(record, dict):
            raise DataError(f"{url}:{number}: each JSONL line must be an object.")
        value = record.get(field_name)
        if not isinstance(value, str):
            problem = "has no field" if field_name not in record else "has a non-text field"
            raise DataError(
                f"{url}:{number}: the first record that {problem} {field_name!r} "
                f"(fields: {', '.join(sorted(record)) or 'none'}); choose the field with "
                "--text-field."
            )
        yield value


def _text(stream: IO[bytes], unit: str, stats: ReadStats) -> Iterator[str]:
    if unit == "file":
        yield decode(stream.read(), 0, stats)
        return
    offset, paragraph = 0, []
    for line in stream:
        text = decode(line, offset, stats)
        offset += len(line)
        if unit == "line":
            if text.strip():
                yield text.rstrip("\r\n")
        elif text.strip():
            paragraph.append(text)
        elif paragraph:
            yield "".join(paragraph).rstrip("\r\n")
            paragraph = []
    if paragraph:
        yield "".join(paragraph).rstrip("\r\n")


def _parquet(
    url: str, field_name: str, stats: ReadStats, storage_options: dict[str, Any] | None
) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{url}: reading Parquet needs pyarrow: pip install 'tessera-train[parquet]'."
        ) from None
    with _open_raw(url, storage_options) as raw:
        hashing = _HashingReader(raw, stats)
        for _ in iter(lambda: hashing.read(4 << 20), b""):
            pass
        hashing.finish()
    with _open_raw(url, storage_options) as raw:
        table = pq.ParquetFile(raw)
        names = table.schema_arrow.names
        if field_name not in names:
            raise DataError(
                f"{url}: no column {field_name!r} (columns: {', '.join(names)}); choose the "
                "field with --text-field."
            )
        row = 0
        for batch in table.iter_batches(columns=[field_name], batch_size=4096):
            for value in batch.column(0).to_pylist():
                row += 1
                if not isinstance(value, str):
                    raise DataError(
                        f"{url}: row {row}: column {field_name!r} holds {value!r}, not text."
                    )
                yield value
