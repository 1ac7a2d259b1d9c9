"""Reading Distributed Checkpoint (DCP) folders without running code from them.

DCP writes a folder's `.metadata` with `pickle`, and reads the non-tensor values of a state
dict (an optimizer's hyperparameters, plain numbers) with `torch.load(weights_only=False)`:
a crafted folder would run its code on the machine that reads it. Tessera reads DCP folders
only through `SafeReader` and `SafePlanner`:

- `.metadata` is unpickled by an unpickler that admits only the classes DCP's metadata is made
  of (`ALLOWED`: the same in torch 2.11 and 2.13) and refuses anything else;
- non-tensor values are read with `torch.load(weights_only=True)` (plain Python values and
  tensors only) before DCP sees them.

Both run after the checksum check against the checkpoint's record (`tessera.core.manifest`),
which catches a changed file first; they defend a folder with no record or a forged one.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

from tessera.core.errors import CheckpointError
from tessera.core.safe_load import UnsafeCheckpoint, load_plain, refused

_METADATA = "torch.distributed.checkpoint.metadata"
_DTYPES = {name for name in dir(torch) if isinstance(getattr(torch, name, None), torch.dtype)}

# What a DCP `.metadata` pickle refers to (found by unpickling real checkpoints of torch 2.11
# and 2.13 and reading their metadata.py / filesystem.py), and nothing else.
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        (_METADATA, "Metadata"),
        (_METADATA, "MetadataIndex"),
        (_METADATA, "StorageMeta"),
        (_METADATA, "TensorStorageMetadata"),
        (_METADATA, "BytesStorageMetadata"),
        (_METADATA, "ChunkStorageMetadata"),
        (_METADATA, "TensorProperties"),
        (_METADATA, "_MEM_FORMAT_ENCODING"),
        ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
        ("torch", "Size"),
        ("torch.serialization", "_get_layout"),  # a layout by its name ('torch.strided')
        ("collections", "OrderedDict"),
        # StorageMeta.checkpoint_id is the path the folder was saved to
        ("pathlib", "PosixPath"),
        ("pathlib", "PurePosixPath"),
        ("pathlib._local", "PosixPath"),  # Python 3.13+
        ("pathlib._local", "PurePosixPath"),
        *(("torch", name) for name in _DTYPES),
    }
)


class _MetadataUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise refused(self.source, f"{module}.{name}")
        return super().find_class(module, name)


def read_metadata(folder: str | Path, rank: int | None = None) -> Metadata:
    """The `Metadata` of a DCP folder, read without admitting any class outside `ALLOWED`."""
    path = Path(folder) / (".metadata" if rank is None else f"__{rank}.metadata")
    try:
        with open(path, "rb") as file:
            metadata = _MetadataUnpickler(file, str(path)).load()
    except UnsafeCheckpoint:
        raise
    except OSError as error:
        raise CheckpointError(f"{path} cannot be read ({error.strerror or error})") from None
    except Exception as error:  # any malformed pickle: truncated, wrong opcodes, bad values
        raise CheckpointError(
            f"{path} is not readable DCP metadata ({type(error).__name__}: "
            f"{str(error)[:200]}); the checkpoint is damaged: use another checkpoint"
        ) from None
    if not isinstance(metadata, Metadata):
        raise CheckpointError(
            f"{path} holds a {type(metadata).__name__}, not DCP metadata; use another checkpoint"
        )
    return metadata


class SafeReader(FileSystemReader):
    """DCP's file reader with `.metadata` read through the restricted unpickler."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        metadata = read_metadata(Path(self.path), kwargs.get("rank"))
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafePlanner(DefaultLoadPlanner):
    """DCP's load planner with non-tensor values read by `torch.load(weights_only=True)`."""

    def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
        loaded = load_plain(value, f"its value {read_item.dest_index.fqn!r}")
        plain = io.BytesIO()  # hand DCP the checked value, re-serialised by us
        torch.save(loaded, plain)
        plain.seek(0)
        super().load_bytes(read_item, plain)


def checkpoint_error_in(error: BaseException) -> CheckpointError | None:
    """A CheckpointError that DCP wrapped into its CheckpointException (per rank), if any."""
    if isinstance(error, CheckpointError):
        return error
    for failure in (getattr(error, "failures", None) or {}).values():
        inner = failure[0] if isinstance(failure, tuple) else failure
        if isinstance(inner, CheckpointError):
            return inner
    cause = error.__cause__ or error.__context__
    return checkpoint_error_in(cause) if cause is not None else None
