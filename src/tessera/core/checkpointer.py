"""`Checkpointer`: how a run saves, finds, loads and finally exports its state.

Two implementations share one manifest (`tessera.core.manifest`) and one model writer
(`tessera.core.export`): `FileCheckpointer` here (the whole state in one `ep<E>-ba<B>.pt`,
written by rank 0) and `tessera.parallel.ShardedCheckpointer` (every rank writes its shards
through Distributed Checkpoint). The trainer only talks to this interface, so resume works the
same in every mode. Files are written atomically and verified by checksum before they are read;
loading uses `torch.load(weights_only=True)`, which runs no pickled code.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tessera.core import world
from tessera.core.errors import CheckpointError
from tessera.core.export import export_model
from tessera.core.files import atomic_write, writing
from tessera.core.manifest import (
    CheckpointManifest,
    CheckpointRecord,
    checkpoint_name,
    describe_files,
)
from tessera.core.safe_load import load_plain

if TYPE_CHECKING:
    from tessera.core.state import State
    from tessera.core.time import Timestamp

log = logging.getLogger(__name__)


class Checkpointer:
    """Base of the checkpoint formats: retention, listing and finding the newest valid one."""

    kind = ""

    def __init__(self, folder: str | Path, keep_last: int | None = None) -> None:
        self.folder = Path(folder)
        self.keep_last = keep_last
        self.manifest = CheckpointManifest(self.folder)

    def save(self, state: State) -> Path | None:  # pragma: no cover - abstract
        """Write a checkpoint of `state` now (every rank calls it)."""
        raise NotImplementedError

    def load(self, state: State, path: str | Path) -> None:  # pragma: no cover - abstract
        """Restore `state` from the checkpoint at `path`."""
        raise NotImplementedError

    def export(self, state: State, folder: str | Path) -> Path | None:  # pragma: no cover
        """Write the trained model (safetensors + config.json) into `folder`."""
        raise NotImplementedError

    def flush(self) -> None:
        """Finish a save still in flight (asynchronous formats); every rank calls it."""

    def close(self) -> None:
        """Release resources at the end of the run, also after an error."""

    def records(self) -> list[CheckpointRecord]:
        return self.manifest.records()

    def latest_valid(self, before_batch: int | None = None) -> Path | None:
        """The newest checkpoint that verifies, chosen on rank 0 and shared with every rank."""
        found = None
        if world.is_main_process():
            record = self.manifest.latest_valid(before_batch)
            found = str(self.folder / record.location) if record is not None else None
        found = world.broadcast_object(found)
        return Path(found) if found else None

    def _record(
        self, name: str, files: dict[str, Path], timestamp: Timestamp, world_size: int
    ) -> CheckpointRecord:
        """Write the record of a checkpoint whose files are complete but not yet in place
        (`files`: the name each will have in the folder -> where it is now). The rename that
        puts them in place comes after, so a crash never leaves a checkpoint without a
        record, only (at worst) a record of one that is not there, which is passed over."""
        record = CheckpointRecord(
            name=name,
            kind=self.kind,  # type: ignore[arg-type]
            epoch=timestamp.epoch,
            batch=timestamp.batch,
            world_size=world_size,
            files=describe_files(self.folder, files),
        )
        self.manifest.write_record(record)
        return record


def record_problem(path: Path) -> str | None:
    """What is wrong with the checkpoint at `path` by its record; None when it verifies, or
    when it has no record (said aloud: it is then read unverified)."""
    manifest = CheckpointManifest(path.parent)
    record = manifest.find(path.name)
    if record is None:
        log.warning("checkpoint %s has no checksum record; reading it unverified", path)
        return None
    return manifest.verify(record)


def check_record(path: Path) -> None:
    """Refuse a checkpoint whose files do not match its record, before anything is read."""
    problem = record_problem(path)
    if problem:
        raise CheckpointError(f"checkpoint {problem}; use an earlier checkpoint")


class FileCheckpointer(Checkpointer):
    """The whole training state in one file per checkpoint, written by rank 0.

    Under DDP every rank holds the same model, so one copy is enough; every rank loads it to
    restore its own optimizer state and random generators.
    """

    kind = "file"

    def save(self, state: State) -> Path | None:
        if state.rank != 0:
            return None
        name = checkpoint_name(state.timestamp.epoch, state.timestamp.batch)
        path = self.folder / f"{name}.pt"
        content = state.state_dict()
        records: list[CheckpointRecord] = []

        def record(temporary: Path) -> None:
            files = {path.name: temporary}
            records.append(self._record(name, files, state.timestamp, state.world_size))

        with writing("checkpoint", path):
            atomic_write(path, lambda file: torch.save(content, file), before_rename=record)
            self.manifest.add(records[0], self.keep_last)  # the index, and retention
        return path

    def load(self, state: State, path: str | Path) -> None:
        state.load_state_dict(read_checkpoint(Path(path)), source=f"checkpoint {path}")

    def export(self, state: State, folder: str | Path) -> Path | None:
        if state.rank != 0:
            return None
        return export_model(state.unwrapped_model, folder)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A single-file checkpoint's content, verified against its record first."""
    from tessera.core.state import STATE_FORMAT

    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a sharded checkpoint folder (written by an FSDP run); load it with "
            "parallelism.strategy: fsdp, or merge it into one model with `tessera consolidate`"
        )
    check_record(path)
    content = load_plain(path, f"checkpoint {path}")
    if not isinstance(content, dict) or content.get("format_version") != STATE_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} is not a Tessera checkpoint of format {STATE_FORMAT}"
        )
    return content
