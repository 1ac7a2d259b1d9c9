"""`JSONLLogger`: every log call as one JSON object per line, for scripts and plots.

Lines look like `{"step": 120, "time": 1763900000.5, "loss/train": 0.41, ...}` ("time" is
Unix seconds). Each line is flushed as it is written, so a crash loses at most the line being
written. The file is appended to: a resumed run continues it and first writes
`{"resumed_at": <step>, "time": ...}`, so lines after that marker with a step at or below it
repeat training that the crash threw away. Non-finite values are written as the strings
"nan", "inf" and "-inf" (JSON has no such numbers). `read_jsonl` reads a file back.
"""

from __future__ import annotations

import errno
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pydantic import Field

from tessera.core.component import ComponentConfig
from tessera.core.files import writing
from tessera.core.logger import LoggerDestination
from tessera.loggers.registry import RunPath, inside_run

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State


class JSONLConfig(ComponentConfig):
    path: RunPath = Field(
        Path("metrics.jsonl"), description="file to append to (relative: inside the run folder)"
    )
    all_ranks: bool = Field(False, description="every rank writes its own <stem>.rank<R> file")


class JSONLLogger(LoggerDestination):
    """Appends metrics to `path` as JSON lines; only rank 0 writes (unless `all_ranks`)."""

    Config = JSONLConfig

    def __init__(self, config: JSONLConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.path = self.config.path
        self.all_ranks = self.config.all_ranks
        self.active = True  # decided from the rank at INIT
        self._file: IO[bytes] | None = None

    @classmethod
    def from_config(cls, config: JSONLConfig, run_dir: Path | None = None, **context: Any):
        return cls(config.model_copy(update={"path": inside_run(config.path, run_dir)}))

    def init(self, state: State, logger: Logger) -> None:
        self.path = inside_run(self.path, state.run_dir)  # a relative path given from Python
        self.active = self.all_ranks or state.rank == 0
        if self.all_ranks and state.world_size > 1:
            self.path = self.path.with_name(f"{self.path.stem}.rank{state.rank}{self.path.suffix}")

    def after_load(self, state: State, logger: Logger) -> None:
        self._write({"resumed_at": state.timestamp.batch, "time": time.time()})

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        record: dict[str, Any] = {"step": step, "time": time.time()}
        record.update({name: _plain(value) for name, value in metrics.items()})
        self._write(record)

    def log_hyperparameters(self, hyperparameters: dict[str, Any]) -> None:
        self._write({"hyperparameters": hyperparameters, "time": time.time()})

    def _write(self, record: dict[str, Any]) -> None:
        if not self.active:
            return
        line = (json.dumps(record, default=str, allow_nan=False) + "\n").encode("utf-8")
        with writing("the metrics file", self.path):
            if self._file is None:
                self._file = _open_for_append(self.path)
            end = self._file.tell()
            try:
                _write_all(self._file, line)
            except OSError:  # a full disk: cut the torn line off, keep every whole one
                self._file.truncate(end)
                raise

    def close(self, state: State, logger: Logger) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            with writing("the metrics file", self.path):
                try:
                    os.fsync(file.fileno())
                finally:
                    file.close()


def _plain(value: Any) -> Any:
    """A JSON-able number from a float, int, 0-dim tensor or numpy scalar."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _open_for_append(path: Path) -> IO[bytes]:
    """Open for appending, unbuffered (each line is one write); a torn last line (a crash
    mid-write) is cut off first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb+") as existing:
            existing.truncate(_end_of_last_line(existing))
    return open(path, "ab", buffering=0)


def _write_all(file: IO[bytes], data: bytes) -> None:
    """Write every byte (an unbuffered write may take only part of them)."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        if not written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def _end_of_last_line(file: IO[bytes], chunk: int = 65536) -> int:
    """The offset just past the file's last newline, reading backwards from the end."""
    end = file.seek(0, os.SEEK_END)
    position = end
    while position > 0:
        start = max(0, position - chunk)
        file.seek(start)
        block = file.read(position - start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a metrics file, in order (a torn last line is skipped)."""
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.endswith("\n"):
                yield json.loads(line)
