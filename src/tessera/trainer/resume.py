"""Where a run starts: its newest valid checkpoint, `load_path`, or the beginning, and never
the beginning silently next to checkpoints of its own that it cannot use.

`autoresume` decides (docs/checkpoints.md, "Resuming"):

- `true`: the newest checkpoint that verifies. When the run folder holds checkpoints but none
  verifies, or they have no records to verify them by, the run stops with a CheckpointError
  naming each file and its problem: starting over would drop that progress and write new
  checkpoints among the old ones.
- `false`: `load_path`, else the beginning; refused when the folder already holds checkpoints
  (the two runs' checkpoints would mix, and the next resume would pick the wrong one).
- `restart`: the earlier run's checkpoints, final model and metrics are moved into
  `replaced/<time>/` (said aloud), then as `false`.

Rank 0 reads the folder and every rank receives the same answer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tessera.core import world
from tessera.core.checkpointer import Checkpointer
from tessera.core.errors import CheckpointError
from tessera.core.manifest import parse_checkpoint_name
from tessera.trainer.run_folder import RunFolder

log = logging.getLogger(__name__)

RESTART = "restart"
_HOW_TO_RESTART = (
    "autoresume=restart (`tessera train RECIPE autoresume=restart`, or "
    "Trainer(autoresume='restart')) moves them to {root}/replaced/ and starts over"
)


def starting_point(
    checkpointer: Checkpointer | None,
    folder: RunFolder | None,
    autoresume: bool | str,
    load_path: str | None,
) -> Path | None:
    """The checkpoint to load before training (None: start from the beginning)."""
    given = Path(load_path) if load_path is not None else None
    if checkpointer is None or folder is None:
        return given
    if autoresume == RESTART:
        return _restart(folder, given)
    view = world.broadcast_object(_survey(checkpointer) if world.is_main_process() else None)
    existing = view["recorded"] + view["unrecorded"]
    if autoresume is False:
        if existing:
            raise CheckpointError(
                f"autoresume is false, but {checkpointer.folder} already holds checkpoints "
                f"of an earlier run ({', '.join(sorted(existing))}); starting over beside "
                "them would mix the two runs' checkpoints. Set autoresume: true to continue "
                f"that run, choose another name, or " + _HOW_TO_RESTART.format(root=folder.root)
            )
        return given
    if view["found"] is not None:
        _say_what_was_passed_over(checkpointer.folder, view)
        return checkpointer.folder / view["found"]
    if not existing:
        return given
    if given is not None and given.resolve().parent == checkpointer.folder.resolve():
        log.warning(
            "no checkpoint in %s verifies; resuming from load_path %s as asked",
            checkpointer.folder,
            given,
        )
        return given
    raise CheckpointError(_cannot_resume(checkpointer.folder, folder, view))


def _survey(checkpointer: Checkpointer) -> dict[str, Any]:
    """What the folder holds. A record whose checkpoint is not there at all (a crash before
    the checkpoint took its name, or files deleted) holds no progress: it is said, not
    counted."""
    manifest = checkpointer.manifest
    records = manifest.records()
    found, skipped = manifest.survey(records=records)
    present = [r.location for r in records if (checkpointer.folder / r.location).exists()]
    absent = [location for location, _ in skipped if location not in present]
    if found is None:
        for location in absent:
            log.warning(
                "checkpoint %s has a record but is not there (its writing was cut short, or "
                "it was deleted); passed over",
                checkpointer.folder / location,
            )
    return {
        "found": found.location if found is not None else None,
        "found_batch": found.batch if found is not None else -1,
        "skipped": skipped if found is not None else [s for s in skipped if s[0] in present],
        "recorded": present,
        "unrecorded": manifest.unrecorded(records),
    }


def _say_what_was_passed_over(checkpoints: Path, view: dict[str, Any]) -> None:
    for location, problem in view["skipped"]:
        log.warning("skipping checkpoint %s: %s", location, problem)
    newer = [
        name
        for name in view["unrecorded"]
        if (parse_checkpoint_name(name) or (0, -1))[1] > view["found_batch"]
    ]
    for name in newer:
        log.warning(
            "skipping checkpoint %s: it has no checksum record (its writing was cut short?)",
            name,
        )
    if view["skipped"] or newer:
        log.warning("using checkpoint %s instead", checkpoints / view["found"])


def _cannot_resume(checkpoints: Path, folder: RunFolder, view: dict[str, Any]) -> str:
    problems = [problem for _, problem in view["skipped"]]
    problems += [
        f"{checkpoints / name} has no checksum record ({name.removesuffix('.pt')}.json) to "
        "verify it by"
        for name in view["unrecorded"]
    ]
    count = len(problems)
    advice = []
    if view["skipped"]:
        advice.append("restore the damaged files from a copy")
    if view["unrecorded"]:
        example = checkpoints / view["unrecorded"][-1]
        advice.append(f"resume from an unrecorded one, unverified, with load_path={example}")
    advice.append(_HOW_TO_RESTART.format(root=folder.root))
    return (
        f"cannot resume {folder.root}: none of its {count} checkpoint(s) can be used ("
        + "; ".join(problems)
        + "). Training would start over from the beginning beside them, so it stops here. "
        + "To go on: "
        + ", or ".join(advice)
    )


def _restart(folder: RunFolder, given: Path | None) -> Path | None:
    moved = world.broadcast_object(folder.set_aside() if world.is_main_process() else None)
    world.barrier()
    if moved is None:
        return given
    target, names = moved
    log.warning(
        "autoresume=restart: moved the earlier run's %s to %s; training starts over",
        ", ".join(names),
        target,
    )
    if given is not None and given.absolute().is_relative_to(folder.root.absolute()):
        given = Path(target) / given.absolute().relative_to(folder.root.absolute())
    return given


def say_already_complete(state: Any, folder: RunFolder | None) -> None:
    """A rerun of a finished run says so (and how to train it again) instead of training."""
    ended = (
        f"stopped at epoch {state.timestamp.epoch} batch {state.timestamp.batch} "
        f"({state.stop_reason}); autoresume=restart trains it again"
        if state.stop_reason is not None
        else f"max_duration {state.max_duration} reached at epoch {state.timestamp.epoch} "
        f"batch {state.timestamp.batch}"
    )
    where = f"; its final model is in {folder.final}" if folder else ""
    log.warning("%s is already complete: %s; nothing to train%s", state.run_name, ended, where)
