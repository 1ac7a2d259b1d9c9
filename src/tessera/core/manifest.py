"""The checkpoint manifest: which checkpoints a folder holds, each file's size and checksum.

Both checkpoint kinds share it: a single file (`ep<E>-ba<B>.pt`, written by one process) and a
sharded folder (`ep<E>-ba<B>/`, written by every rank through Distributed Checkpoint). Each
checkpoint also carries its own record, `ep<E>-ba<B>.json` beside it, so the index
`manifest.json` can always be rebuilt from the checkpoints themselves: a missing, empty or
damaged manifest never makes a run forget its checkpoints (it is rebuilt, and that is said).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from tessera.core.files import atomic_write_text, file_checksum

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 2
_NAME = re.compile(r"^ep(\d+)-ba(\d+)$")


class FileRecord(BaseModel):
    bytes: int
    xxh3_128: str


class CheckpointRecord(BaseModel):
    """One checkpoint: its name, kind, position, and every file with size and checksum.

    File paths are relative to the checkpoints folder (`ep0-ba10.pt`, `ep0-ba10/.metadata`).
    """

    name: str
    kind: Literal["file", "sharded"]
    epoch: int
    batch: int
    world_size: int = 1
    files: dict[str, FileRecord]

    @property
    def location(self) -> str:
        """The checkpoint's own path inside the folder: the .pt file or the shard folder."""
        return f"{self.name}.pt" if self.kind == "file" else self.name


class _ManifestFile(BaseModel):
    format_version: Literal[2]
    checkpoints: list[CheckpointRecord]


def checkpoint_name(epoch: int, batch: int) -> str:
    return f"ep{epoch}-ba{batch}"


def describe_files(folder: Path, paths: list[str] | dict[str, Path]) -> dict[str, FileRecord]:
    """Size and checksum of each file: paths relative to `folder`, or {the relative path a
    file will have: where it is now} for files not yet renamed into place."""
    where = (
        paths if isinstance(paths, dict) else {relative: folder / relative for relative in paths}
    )
    return {
        relative: FileRecord(bytes=path.stat().st_size, xxh3_128=file_checksum(path))
        for relative, path in where.items()
    }


class CheckpointManifest:
    """Reads, verifies, extends and prunes the checkpoints of one folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    # -- reading ----------------------------------------------------------------------------

    def records(self, quiet: bool = False) -> list[CheckpointRecord]:
        """The checkpoints, oldest first: the index, plus any checkpoint whose own record the
        index lacks (a write cut short between the two); rebuilt from the records if the index
        is bad, which is said unless `quiet` (while writing, when the index is rewritten)."""
        path = self.folder / MANIFEST
        problem = None
        if path.exists():
            try:
                raw = json.loads(path.read_text())
                if isinstance(raw, dict) and raw.get("format_version") == 1:
                    return _from_version_1(raw)
                index = _ManifestFile.model_validate(raw).checkpoints
                known = {record.name for record in index}
                extra = [record for record in self._rebuild() if record.name not in known]
                return sorted(index + extra, key=lambda record: (record.batch, record.epoch))
            except (ValueError, ValidationError, KeyError, TypeError, AttributeError) as error:
                problem = f"it is unreadable ({type(error).__name__})"
            except OSError as error:
                problem = f"it cannot be read ({error.strerror or error})"
        rebuilt = self._rebuild()
        if quiet:
            return rebuilt
        if rebuilt:
            reason = problem or "it is missing"
            log.warning(
                "checkpoint manifest %s: %s; rebuilt from the %d checkpoint record(s) beside it",
                path,
                reason,
                len(rebuilt),
            )
        elif problem:
            log.warning(
                "checkpoint manifest %s: %s, and no checkpoint records exist", path, problem
            )
        return rebuilt

    def _rebuild(self) -> list[CheckpointRecord]:
        records = []
        if not self.folder.is_dir():
            return records
        for sidecar in self.folder.glob("ep*-ba*.json"):
            if not _NAME.match(sidecar.stem):
                continue
            try:
                records.append(CheckpointRecord.model_validate_json(sidecar.read_text()))
            except (ValueError, ValidationError, OSError) as error:
                log.warning("checkpoint record %s is unreadable (%s); ignored", sidecar, error)
        return sorted(records, key=lambda record: (record.batch, record.epoch))

    def unrecorded(self, records: list[CheckpointRecord] | None = None) -> list[str]:
        """Checkpoint files or folders that have no record (cannot be verified)."""
        known = {record.location for record in (self.records() if records is None else records)}
        found = []
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                stem = path.name.removesuffix(".pt")
                if _NAME.match(stem) and path.name not in known and not path.name.endswith(".json"):
                    found.append(path.name)
        return sorted(found)

    def verify(self, record: CheckpointRecord) -> str | None:
        """None if every file of the checkpoint matches its record, else what is wrong."""
        for relative, expected in record.files.items():
            path = self.folder / relative
            if not path.exists():
                return f"{path} is missing"
            size = path.stat().st_size
            if size != expected.bytes:
                hint = "truncated?" if size < expected.bytes else "written to since?"
                return f"{path} has {size} bytes, its record says {expected.bytes} ({hint})"
            if file_checksum(path) != expected.xxh3_128:
                return f"{path} does not match its checksum (corrupt)"
        return None

    def find(self, location: str) -> CheckpointRecord | None:
        # quiet: a rebuilt index was said when the folder was surveyed, not again per lookup
        return next((r for r in self.records(quiet=True) if r.location == location), None)

    def survey(
        self, before_batch: int | None = None, records: list[CheckpointRecord] | None = None
    ) -> tuple[CheckpointRecord | None, list[tuple[str, str]]]:
        """The newest checkpoint that verifies (at or before `before_batch`), and (location,
        what is wrong) for each newer one, newest first; nothing is said here."""
        records = self.records() if records is None else records
        candidates = [r for r in records if before_batch is None or r.batch <= before_batch]
        problems = []
        for record in reversed(candidates):
            problem = self.verify(record)
            if problem is None:
                return record, problems
            problems.append((record.location, problem))
        return None, problems

    def latest_valid(self, before_batch: int | None = None) -> CheckpointRecord | None:
        """The newest checkpoint that verifies (at or before `before_batch`), saying aloud each
        newer one that is skipped and why."""
        found, problems = self.survey(before_batch)
        for location, problem in problems:
            log.warning("skipping checkpoint %s: %s", location, problem)
        if found is not None and problems:
            log.warning("using checkpoint %s instead", self.folder / found.location)
        elif problems:
            log.warning("none of the %d checkpoint(s) in %s verifies", len(problems), self.folder)
        return found

    # -- writing ----------------------------------------------------------------------------

    def write_record(self, record: CheckpointRecord) -> None:
        """A checkpoint's own record, `ep<E>-ba<B>.json` beside it."""
        atomic_write_text(self.folder / f"{record.name}.json", record.model_dump_json(indent=2))

    def add(self, record: CheckpointRecord, keep_last: int | None = None) -> list[str]:
        """Record a written checkpoint (its own record first, then the index); prune to
        `keep_last`. Returns the locations of the checkpoints deleted by retention."""
        records = [r for r in self.records(quiet=True) if r.name != record.name] + [record]
        sidecar = self.folder / f"{record.name}.json"
        if not sidecar.exists() or sidecar.read_text() != record.model_dump_json(indent=2):
            self.write_record(record)
        records.sort(key=lambda r: (r.batch, r.epoch))
        removed: list[CheckpointRecord] = []
        if keep_last is not None and keep_last > 0 and len(records) > keep_last:
            removed, records = records[:-keep_last], records[-keep_last:]
        self._write(records)
        for old in removed:
            self._delete(old)
        return [old.location for old in removed]

    def _write(self, records: list[CheckpointRecord]) -> None:
        text = _ManifestFile(format_version=FORMAT_VERSION, checkpoints=records).model_dump_json(
            indent=2
        )
        atomic_write_text(self.folder / MANIFEST, text)

    def _delete(self, record: CheckpointRecord) -> None:
        import shutil

        # The record first: a crash between the two leaves an old unrecorded checkpoint,
        # which is passed over, never a record of a missing one.
        (self.folder / f"{record.name}.json").unlink(missing_ok=True)
        target = self.folder / record.location
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)


def parse_checkpoint_name(name: str) -> tuple[int, int] | None:
    """(epoch, batch) from 'ep3-ba120' or 'ep3-ba120.pt'; None for other names."""
    match = _NAME.match(name.removesuffix(".pt"))
    return (int(match.group(1)), int(match.group(2))) if match else None


def _from_version_1(raw: Any) -> list[CheckpointRecord]:
    """Records from a format-1 manifest (single files: file, bytes, xxh3_128, epoch, batch)."""
    records = []
    for entry in raw["checkpoints"]:
        name = entry["file"].removesuffix(".pt")
        file = FileRecord(bytes=entry["bytes"], xxh3_128=entry["xxh3_128"])
        records.append(
            CheckpointRecord(
                name=name,
                kind="file",
                epoch=entry["epoch"],
                batch=entry["batch"],
                files={entry["file"]: file},
            )
        )
    return records
