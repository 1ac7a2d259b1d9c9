"""Sharded checkpoints for FSDP runs, written by every rank through Distributed Checkpoint.

A checkpoint is a folder `ep<E>-ba<B>/` holding DCP's files (`.metadata`, `__<rank>_0.distcp`:
the model and optimizer shards, each rank writing its own) and `train-state-rank<R>.pt` (the
rest of the training state of rank R: step, schedules, data position, its RNGs). It is written
into `.ep<E>-ba<B>.partial/` and renamed once every rank has finished, then listed with each
file's size and xxh3-128 checksum in `sharded-manifest.json`; a crash mid-write leaves the
previous checkpoints untouched.

DCP stores every tensor with its global shape, so a checkpoint saved by 4 processes loads into
2 (or 1): each rank reads the slices its new shards need. The data position is a global sample
count, so the resumed run reads the same global batches.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import save_file

from tessera.core import distributed
from tessera.core.callback import Callback
from tessera.core.checkpoint import atomic_write, checkpoint_name, file_checksum
from tessera.core.errors import CheckpointError
from tessera.core.event import Event
from tessera.core.interval import Interval
from tessera.core.time import Time

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State
    from tessera.core.trainer import Trainer

MANIFEST = "sharded-manifest.json"
FORMAT = "tessera-sharded"


def train_state_file(rank: int) -> str:
    return f"train-state-rank{rank}.pt"


def _network_keys(state: State) -> tuple[str, list[str]]:
    """The prefix of the exported network inside the adapter, and names of tied duplicates."""
    model = state.unwrapped_model
    network = model.network()
    prefix = next((name for name, module in model.named_modules() if module is network), "")
    seen: set[int] = set()
    tied = []
    for name, tensor in network.state_dict(keep_vars=True).items():
        local = getattr(tensor, "_local_tensor", tensor)
        key = id(tensor) if local.numel() == 0 else local.data_ptr()
        if key in seen:
            tied.append(name)
        seen.add(key)
    return prefix, tied


def _sharded_content(state: State) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(state.unwrapped_model, state.optimizers)
    return {"model": model_state, "optimizer": optimizer_state}


def _train_state(state: State) -> dict[str, Any]:
    full = state.state_dict()
    del full["model"], full["optimizers"]  # in DCP's files, sharded
    prefix, tied = _network_keys(state)
    full["sharded"] = {
        "format": FORMAT,
        "world_size": state.world_size,
        "network_prefix": prefix,
        "tied": tied,
        "export_config": json.dumps(state.unwrapped_model.export_config()),
    }
    return full


# -- manifest ---------------------------------------------------------------------------------


def read_manifest(folder: Path) -> list[dict[str, Any]]:
    path = folder / MANIFEST
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text())["checkpoints"])
    except (ValueError, KeyError) as error:
        raise CheckpointError(
            f"sharded checkpoint manifest {path} is unreadable ({error}); delete it to start "
            "over, or restore it from a backup"
        ) from error


def verify(folder: Path, entry: dict[str, Any]) -> str | None:
    """None if every file of the checkpoint matches the manifest, else what is wrong."""
    root = folder / entry["folder"]
    for name, expected in entry["files"].items():
        path = root / name
        if not path.exists():
            return f"{path} is missing"
        if path.stat().st_size != expected["bytes"]:
            return f"{path} has {path.stat().st_size} bytes, expected {expected['bytes']}"
        if file_checksum(path) != expected["xxh3_128"]:
            return f"{path} does not match its checksum (corrupt)"
    return None


def latest_valid(folder: str | Path) -> Path | None:
    """The newest sharded checkpoint that verifies (checked on rank 0, shared with all)."""
    folder = Path(folder)
    found = None
    if distributed.is_main_process():
        for entry in reversed(read_manifest(folder)):
            problem = verify(folder, entry)
            if problem is None:
                found = str(folder / entry["folder"])
                break
            warnings.warn(f"skipping checkpoint: {problem}; trying the previous one", stacklevel=2)
    found = distributed.broadcast_object(found)
    return Path(found) if found else None


# -- save -------------------------------------------------------------------------------------


class _Pending:
    """A save whose shards may still be being written (async)."""

    def __init__(self, folder: Path, name: str, staging: Path, future: Any, meta: dict) -> None:
        self.folder, self.name, self.staging, self.future, self.meta = (
            folder,
            name,
            staging,
            future,
            meta,
        )


def _start_save(state: State, folder: Path, name: str, async_group: Any = None) -> _Pending:
    rank = distributed.get_rank()
    staging = folder / f".{name}.partial"
    if rank == 0:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    distributed.barrier()
    content = _sharded_content(state)
    if async_group is not None:
        future = dcp.async_save(content, checkpoint_id=str(staging), process_group=async_group)
    else:
        dcp.save(content, checkpoint_id=str(staging))
        future = None
    extra = _train_state(state)
    atomic_write(staging / train_state_file(rank), lambda file: torch.save(extra, file))
    timestamp = extra["timestamp"]
    meta = {"epoch": timestamp["epoch"], "batch": timestamp["batch"], "world": state.world_size}
    return _Pending(folder, name, staging, future, meta)


def _finish_save(pending: _Pending, keep_last: int | None) -> Path:
    """Wait for the shards, checksum each rank's own files, and publish the checkpoint."""
    if pending.future is not None:
        result = pending.future.result()
        upload = getattr(result, "upload_completion", None)  # newer DCP: staging + upload
        if upload is not None:
            upload.result()
    rank = distributed.get_rank()
    mine = [train_state_file(rank)]
    mine += [p.name for p in pending.staging.glob(f"__{rank}_*")]
    if rank == 0:
        mine.append(".metadata")
    files = {
        name: {
            "bytes": (pending.staging / name).stat().st_size,
            "xxh3_128": file_checksum(pending.staging / name),
        }
        for name in mine
    }
    everyone = distributed.all_gather_objects(files)
    final = pending.folder / pending.name
    if rank == 0:
        listing = {name: value for part in everyone for name, value in part.items()}
        old = pending.folder / f".{pending.name}.old"
        if final.exists():  # the same step saved again (after a restart): swap, then delete
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        pending.staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        entries = [e for e in read_manifest(pending.folder) if e["folder"] != pending.name]
        entries.append({"folder": pending.name, "files": listing, **pending.meta})
        if keep_last:
            for stale in entries[:-keep_last]:
                shutil.rmtree(pending.folder / stale["folder"], ignore_errors=True)
            entries = entries[-keep_last:]
        text = json.dumps({"format": FORMAT, "checkpoints": entries}, indent=2)
        atomic_write(pending.folder / MANIFEST, lambda file: file.write(text), mode="w")
    distributed.barrier()
    return final


def save(state: State, folder: str | Path, keep_last: int | None = None) -> Path:
    """Write a sharded checkpoint of `state` now (every rank must call this)."""
    ts = state.timestamp
    name = checkpoint_name(ts.epoch, ts.batch).removesuffix(".pt")
    return _finish_save(_start_save(state, Path(folder), name), keep_last)


# -- load -------------------------------------------------------------------------------------


def load(state: State, path: str | Path) -> None:
    """Load a sharded checkpoint into `state`, resharding to this run's world size."""
    from torch.distributed.checkpoint.state_dict import set_state_dict

    path = Path(path)
    rank = distributed.get_rank()
    own = path / train_state_file(rank)
    extra_path = own if own.exists() else path / train_state_file(0)
    if not (path / ".metadata").exists() or not extra_path.exists():
        raise CheckpointError(
            f"{path} is not a sharded Tessera checkpoint (no DCP .metadata or "
            f"{train_state_file(0)}); single-file checkpoints (*.pt) load with strategy 'ddp'"
        )
    extra = torch.load(extra_path, map_location="cpu", weights_only=True)
    saved_world = extra["sharded"]["world_size"]
    data = extra.get("data")
    if saved_world != state.world_size and data is not None and "samples_seen" not in data:
        raise CheckpointError(
            f"checkpoint {path} was saved by {saved_world} processes and its data position is "
            f"per process, so it cannot be split over {state.world_size}; resume with "
            f"--nproc {saved_world}, or use a data set whose position is global"
        )
    if saved_world != state.world_size and own != extra_path:
        warnings.warn(
            f"{path} was saved by {saved_world} processes; rank {rank} takes rank 0's random "
            "state (weights, optimizer and data order are resharded exactly)",
            stacklevel=2,
        )
    content = _sharded_content(state)
    try:
        dcp.load(content, checkpoint_id=str(path))
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {path} does not fit this model and optimizer: "
            f"{str(error).strip().splitlines()[-1][:300]} (was it saved from another model "
            "or optimizer configuration?)"
        ) from error
    model = state.unwrapped_model
    set_state_dict(
        model,
        state.optimizers,
        model_state_dict=content["model"],
        optim_state_dict=content["optimizer"],
    )
    del extra["sharded"]
    # The weights and optimizer are loaded; hand the state back its own (a no-copy load) so
    # State.load_state_dict restores everything else: step, schedules, data position, RNGs.
    extra["model"] = model.state_dict()
    extra["optimizers"] = [optimizer.state_dict() for optimizer in state.optimizers]
    state.load_state_dict(extra, source=f"checkpoint {path}")


def resume(
    trainer: Trainer, folder: str | Path | None, load_path: str | Path | None
) -> Path | None:
    """Autoresume from `folder`'s newest valid checkpoint, else start from `load_path`."""
    path = latest_valid(folder) if folder is not None else None
    if path is None and load_path is not None:
        path = Path(load_path)
    if path is None:
        return None
    load(trainer.state, path)
    trainer.resumed_from = path
    trainer.engine.run_event(Event.AFTER_LOAD)
    return path


class ShardedCheckpointSaver(Callback):
    """Every rank writes its shards every `interval`; with `async_save`, the writing overlaps
    training (DCP `async_save` on its own gloo group) and is published at the next save."""

    def __init__(
        self,
        folder: str | Path,
        interval: Time | str | int,
        keep_last: int | None = None,
        async_save: bool = False,
    ) -> None:
        self.folder = Path(folder)
        self.interval = Interval(interval, "save_interval")
        self.keep_last = keep_last
        self.async_save = async_save
        self.saved: list[Path] = []
        self._pending: _Pending | None = None
        self._group: Any = None

    def _save_if_due(self, state: State, event: Event) -> None:
        if not self.interval.due(state, event):
            return
        self.flush()
        if self.async_save and self._group is None:
            import torch.distributed as dist

            self._group = dist.new_group(backend="gloo")
        ts = state.timestamp
        name = checkpoint_name(ts.epoch, ts.batch).removesuffix(".pt")
        self._pending = _start_save(state, self.folder, name, self._group)
        if not self.async_save:
            self.flush()

    def flush(self) -> None:
        """Publish the save in flight, if any (a collective: every rank calls it)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.saved.append(_finish_save(pending, self.keep_last))

    def batch_checkpoint(self, state: State, logger: Logger) -> None:
        self._save_if_due(state, Event.BATCH_END)

    def epoch_checkpoint(self, state: State, logger: Logger) -> None:
        self._save_if_due(state, Event.EPOCH_END)

    def fit_end(self, state: State, logger: Logger) -> None:
        self.flush()

    def close(self, state: State, logger: Logger) -> None:
        # After an error other ranks may be gone: wait for our own writes, publish nothing.
        if self._pending is not None and self._pending.future is not None:
            with contextlib.suppress(Exception):  # the run is failing: keep its first error
                self._pending.future.result()
        self._pending = None


# -- consolidation ----------------------------------------------------------------------------


def write_safetensors(
    tensors: dict[str, torch.Tensor], config: dict[str, Any], folder: Path
) -> Path:
    """`model.safetensors` + `config.json` in the layout `export_model` writes."""
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / ".model.safetensors.tmp"
    save_file(
        {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()},
        str(temporary),
        metadata={"format": "pt"},
    )
    temporary.replace(folder / "model.safetensors")
    text = json.dumps({"format": "tessera", "format_version": 1, **config}, indent=2)
    atomic_write(folder / "config.json", lambda file: file.write(text), mode="w")
    return folder


def _network_tensors(
    model_state: dict[str, torch.Tensor], prefix: str, tied: list[str]
) -> dict[str, torch.Tensor]:
    start = f"{prefix}." if prefix else ""
    skip = set(tied)
    return {
        key[len(start) :]: tensor
        for key, tensor in model_state.items()
        if key.startswith(start) and key[len(start) :] not in skip
    }


def consolidate(path: str | Path, out: str | Path) -> Path:
    """Merge a sharded checkpoint's model into one safetensors file (no process group needed).

    Only the model's tensors are read, each whole, so this needs about one model's worth of
    CPU memory and no GPU.
    """
    path, out = Path(path), Path(out)
    info_path = path / train_state_file(0)
    if not (path / ".metadata").exists() or not info_path.exists():
        raise CheckpointError(
            f"{path} is not a sharded Tessera checkpoint folder (it needs .metadata and "
            f"{train_state_file(0)}); pass a folder like runs/NAME/checkpoints/ep0-ba100"
        )
    info = torch.load(info_path, map_location="cpu", weights_only=True)["sharded"]
    reader = dcp.FileSystemReader(str(path))
    metadata = reader.read_metadata()
    model_state: dict[str, torch.Tensor] = {}
    for key, item in metadata.state_dict_metadata.items():
        if key.startswith("model.") and hasattr(item, "size"):
            model_state[key.removeprefix("model.")] = torch.empty(
                tuple(item.size), dtype=item.properties.dtype
            )
    with warnings.catch_warnings():  # "no process group: loading in one process" is the point
        warnings.simplefilter("ignore", UserWarning)
        dcp.load({"model": model_state}, storage_reader=reader, no_dist=True)
    tensors = _network_tensors(model_state, info["network_prefix"], info["tied"])
    return write_safetensors(tensors, json.loads(info["export_config"]), out)


def export_full_model(state: State, folder: str | Path) -> Path | None:
    """Gather the sharded weights (every rank calls this) and write them on rank 0."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    full = get_model_state_dict(state.unwrapped_model, options=options)
    prefix, tied = _network_keys(state)
    if distributed.get_rank() != 0:
        return None
    tensors = _network_tensors(full, prefix, tied)
    return write_safetensors(tensors, state.unwrapped_model.export_config(), Path(folder))
