"""Sharded checkpoints for FSDP runs, written by every rank through Distributed Checkpoint.

A checkpoint is a folder `ep<E>-ba<B>/` holding DCP's files (`.metadata`, `__<rank>_0.distcp`:
the model and optimizer shards, each rank writing its own) and `train-state-rank<R>.pt` (the
rest of the training state of rank R: step, schedules, data position, its RNGs). It is written
into `.ep<E>-ba<B>.partial/` and renamed once every rank has finished, then recorded with each
file's size and xxh3-128 checksum in the checkpoint manifest that single-file checkpoints use
too (`tessera.core.manifest`); a crash mid-write leaves the previous checkpoints untouched.

DCP stores every tensor with its global shape, so a checkpoint saved by 4 processes loads into
2 (or 1): each rank reads the slices its new shards need. The data position is a global sample
count, so the resumed run reads the same global batches.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed.checkpoint as dcp

from tessera.core import world
from tessera.core.checkpointer import Checkpointer, check_record, record_problem
from tessera.core.errors import CheckpointError
from tessera.core.export import write_model_folder
from tessera.core.files import RERUN, WriteError, atomic_write, write_failure, writing
from tessera.core.manifest import checkpoint_name
from tessera.core.safe_load import load_plain
from tessera.parallel.safe_dcp import SafePlanner, SafeReader, checkpoint_error_in, read_metadata

if TYPE_CHECKING:
    from tessera.core.state import State

log = logging.getLogger(__name__)

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
        "export_config": json.dumps(state.unwrapped_model.exported_config()),
    }
    return full


# -- save -------------------------------------------------------------------------------------


class _Pending:
    """A save whose shards may still be being written (async), or that failed (`problem`)."""

    def __init__(
        self,
        name: str,
        staging: Path,
        future: Any,
        state: State,
        problem: tuple[str, bool] | None = None,
    ) -> None:
        self.name, self.staging, self.future, self.problem = name, staging, future, problem
        self.timestamp, self.world_size = state.timestamp, state.world_size


def _problem(error: BaseException) -> tuple[str, bool]:
    """What went wrong with this rank's writing, in words, and whether the storage is to blame
    (a full disk: a WriteError) rather than the program."""
    reason = write_failure(error)
    if reason is not None:
        return reason, True
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}", False


def _start_save(state: State, folder: Path, name: str, async_group: Any = None) -> _Pending:
    """Start writing every rank's shards and training state into the staging folder.

    A rank that fails to write keeps going to the next collective with its problem, so that
    every rank learns of it in `_finish` (none is left waiting for the others)."""
    rank = world.get_rank()
    staging = folder / f".{name}.partial"
    problem = None
    if rank == 0:
        try:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        except OSError as error:
            problem = _problem(error)
    problem = world.broadcast_object(problem)  # every rank waits for the folder
    if problem is not None:
        return _Pending(name, staging, None, state, problem)
    content = _sharded_content(state)
    future = None
    try:
        if async_group is not None:
            future = dcp.async_save(content, checkpoint_id=str(staging), process_group=async_group)
        else:
            dcp.save(content, checkpoint_id=str(staging))
        extra = _train_state(state)
        atomic_write(staging / train_state_file(rank), lambda file: torch.save(extra, file))
    except (Exception, dcp.CheckpointException) as error:  # DCP's is a BaseException
        if write_failure(error) is None and world.get_world_size() == 1:
            raise  # not a storage problem, and nobody to tell: the error as it is
        problem = _problem(error)
    return _Pending(name, staging, future, state, problem)


class ShardedCheckpointer(Checkpointer):
    """Every rank writes its shards; with `async_save`, the writing overlaps training (DCP
    `async_save` on its own gloo group) and is published at the next save or at the end."""

    kind = "sharded"

    def __init__(
        self, folder: str | Path, keep_last: int | None = None, async_save: bool = False
    ) -> None:
        super().__init__(folder, keep_last)
        self.async_save = async_save
        self._pending: _Pending | None = None
        self._group: Any = None

    def save(self, state: State) -> Path | None:
        self.flush()
        if self.async_save and self._group is None:
            import torch.distributed as dist

            self._group = dist.new_group(backend="gloo")
        name = checkpoint_name(state.timestamp.epoch, state.timestamp.batch)
        self._pending = _start_save(state, self.folder, name, self._group)
        return None if self.async_save else self.flush()

    def flush(self) -> Path | None:
        """Publish the save in flight, if any (a collective: every rank calls it)."""
        if self._pending is None:
            return None
        pending, self._pending = self._pending, None
        return self._finish(pending)

    def _finish(self, pending: _Pending) -> Path:
        """Wait for the shards, checksum each rank's own files, and publish the checkpoint;
        when any rank could not write its part, every rank raises the same WriteError and
        the partial folder is removed (the earlier checkpoints are untouched)."""
        problem = pending.problem
        if problem is None and pending.future is not None:
            try:
                result = pending.future.result()
                upload = getattr(result, "upload_completion", None)  # newer DCP: staging+upload
                if upload is not None:
                    upload.result()
            except (Exception, dcp.CheckpointException) as error:  # DCP's is a BaseException
                problem = _problem(error)
        rank = world.get_rank()
        mine: list[str] = []
        if problem is None:
            mine = [train_state_file(rank)] + [p.name for p in pending.staging.glob(f"__{rank}_*")]
            if rank == 0:
                mine.append(".metadata")
        everyone = world.all_gather_objects((problem, mine))
        problems = [(f"{p[0]} (rank {r})", p[1]) for r, (p, _) in enumerate(everyone) if p]
        final = self.folder / pending.name
        unpublished = None
        if not problems and rank == 0:
            try:
                names = [name for _, part in everyone for name in part]
                self._publish_folder(pending, final, names)
            except WriteError as error:
                unpublished = str(error)
        unpublished = world.broadcast_object(unpublished)
        if (problems or unpublished) and rank == 0:
            shutil.rmtree(pending.staging, ignore_errors=True)  # never published: not kept
        if unpublished is not None:
            raise WriteError(unpublished)
        if problems:
            reasons = "; ".join(reason for reason, _ in problems)
            if all(storage for _, storage in problems):
                raise WriteError(f"cannot write checkpoint {final}: {reasons}. {RERUN}")
            raise RuntimeError(f"checkpoint {final} was not written: {reasons}")
        return final

    def _publish_folder(self, pending: _Pending, final: Path, names: list[str]) -> None:
        """Record the staged checkpoint, move it into place, then index it (rank 0): the
        record comes first, so a crash never leaves a checkpoint without one."""
        with writing("checkpoint", final):
            files = {f"{pending.name}/{name}": pending.staging / name for name in names}
            record = self._record(pending.name, files, pending.timestamp, pending.world_size)
            old = self.folder / f".{pending.name}.old"
            if final.exists():  # the same step saved again (after a restart): swap, delete
                shutil.rmtree(old, ignore_errors=True)
                final.rename(old)
            pending.staging.rename(final)
            shutil.rmtree(old, ignore_errors=True)
            self.manifest.add(record, self.keep_last)

    def load(self, state: State, path: str | Path) -> None:
        """Verify the checkpoint's files against its record (rank 0, for every rank), then
        load it; a problem stops every rank with the same error."""
        path = Path(path)
        problem = record_problem(path) if world.is_main_process() else None
        problem = world.broadcast_object(problem)
        if problem:
            raise CheckpointError(f"checkpoint {problem}; use an earlier checkpoint")
        load_sharded(state, path)

    def export(self, state: State, folder: str | Path) -> Path | None:
        """Gather the sharded weights (every rank calls this) and write them on rank 0."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        full = get_model_state_dict(state.unwrapped_model, options=options)
        prefix, tied = _network_keys(state)
        if world.get_rank() != 0:
            return None
        tensors = _network_tensors(full, prefix, tied)
        return write_model_folder(tensors, state.unwrapped_model.exported_config(), folder)

    def close(self) -> None:
        # After an error other ranks may be gone: wait for our own writes, publish nothing.
        if self._pending is not None and self._pending.future is not None:
            with contextlib.suppress(Exception):  # the run is failing: keep its first error
                self._pending.future.result()
        self._pending = None


# -- load -------------------------------------------------------------------------------------


def load_sharded(state: State, path: str | Path) -> None:
    """Load a sharded checkpoint into `state`, resharding to this run's world size."""
    from torch.distributed.checkpoint.state_dict import set_state_dict

    path = Path(path)
    rank = world.get_rank()
    own = path / train_state_file(rank)
    extra_path = own if own.exists() else path / train_state_file(0)
    if not (path / ".metadata").exists() or not extra_path.exists():
        raise CheckpointError(
            f"{path} is not a sharded Tessera checkpoint (no DCP .metadata or "
            f"{train_state_file(0)}); single-file checkpoints (*.pt) load with strategy 'ddp'"
        )
    extra = _read_train_state(extra_path)
    saved_world = extra["sharded"]["world_size"]
    data = extra.get("data")
    if saved_world != state.world_size and data is not None and "samples_seen" not in data:
        raise CheckpointError(
            f"checkpoint {path} was saved by {saved_world} processes and its data position is "
            f"per process, so it cannot be split over {state.world_size}; resume with "
            f"--nproc {saved_world}, or use a data set whose position is global"
        )
    if saved_world != state.world_size and own != extra_path:
        log.warning(
            "%s was saved by %d processes; rank %d takes rank 0's random state (weights, "
            "optimizer and data order are resharded exactly)",
            path,
            saved_world,
            rank,
        )
    read_metadata(path)  # refused here, with its own error, before DCP reads it
    content = _sharded_content(state)
    try:
        dcp.load(content, storage_reader=SafeReader(str(path)), planner=SafePlanner())
    except (Exception, dcp.CheckpointException) as error:  # DCP's is a BaseException
        refusal = checkpoint_error_in(error)
        if refusal is not None:
            raise CheckpointError(f"checkpoint {path}: {refusal}") from None
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


def _read_train_state(path: Path) -> dict[str, Any]:
    """A rank's `train-state-rank<R>.pt`, as data only, with the sharded layout it needs."""
    content = load_plain(path, f"checkpoint file {path}")
    info = content.get("sharded") if isinstance(content, dict) else None
    needed = ("world_size", "network_prefix", "tied", "export_config")
    if not isinstance(info, dict) or any(key not in info for key in needed):
        raise CheckpointError(
            f"{path} is not the training state of a Tessera sharded checkpoint (format "
            f"{FORMAT!r}); the checkpoint is damaged or from another program"
        )
    return content


# -- consolidation ----------------------------------------------------------------------------


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
    check_record(path)  # every file against its checksum before any is read
    info = _read_train_state(info_path)["sharded"]
    reader = SafeReader(str(path))
    metadata = reader.read_metadata()
    model_state: dict[str, torch.Tensor] = {}
    for key, item in metadata.state_dict_metadata.items():
        if key.startswith("model.") and hasattr(item, "size"):
            model_state[key.removeprefix("model.")] = torch.empty(
                tuple(item.size), dtype=item.properties.dtype
            )
    with warnings.catch_warnings():  # "no process group: loading in one process" is the point
        warnings.simplefilter("ignore", UserWarning)
        try:
            dcp.load(
                {"model": model_state}, storage_reader=reader, planner=SafePlanner(), no_dist=True
            )
        except (Exception, dcp.CheckpointException) as error:  # DCP's is a BaseException
            refusal = checkpoint_error_in(error)
            if refusal is None:
                raise
            raise CheckpointError(f"checkpoint {path}: {refusal}") from None
    tensors = _network_tensors(model_state, info["network_prefix"], info["tied"])
    return write_model_folder(tensors, json.loads(info["export_config"]), out)
