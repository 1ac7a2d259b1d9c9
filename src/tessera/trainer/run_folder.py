"""The run folder `run_dir/name/`: what a run leaves behind.

config.yaml     the resolved configuration (runs started from a recipe)
metrics.jsonl   one JSON object per logging step
checkpoints/    ep<E>-ba<B>.pt (or ep<E>-ba<B>/ when sharded), their records, manifest.json
final/          model.safetensors + config.json: the trained model, loadable without Tessera
logs/           one log per rank for multi-process runs
replaced/       earlier runs set aside by `autoresume: restart`, one folder each
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tessera.core.errors import UserError

# What a run leaves as its progress: moved aside together when a run starts over.
PROGRESS = ("checkpoints", "final", "metrics.jsonl", "cost.json", "tensorboard")


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def final(self) -> Path:
        return self.root / "final"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    def create(self) -> RunFolder:
        """Make the folder (or say clearly why it cannot be made)."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(
                f"run folder {self.root} exists and is a file; choose another name or run_dir"
            )
        for part in (self.checkpoints, self.final):
            if part.exists() and not part.is_dir():
                raise UserError(
                    f"{part} exists and is not a folder; the run needs it for its "
                    f"{part.name}: move the file away, or choose another name or run_dir"
                )
        for part in (self.config, self.root / "metrics.jsonl", self.checkpoints / "manifest.json"):
            if part.is_dir():
                raise UserError(
                    f"{part} is a folder; the run writes its {part.name} file there: move the "
                    "folder away, or choose another name or run_dir"
                )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as error:
            raise UserError(
                f"run_dir: cannot write the run folder {self.root} ({error.strerror or error}); "
                "choose a writable run_dir (e.g. run_dir=/tmp/runs) or fix its permissions"
            ) from None
        return self

    def set_aside(self) -> tuple[Path, list[str]] | None:
        """Move the progress of an earlier run (checkpoints, final model, metrics) into
        `replaced/<time>/`, so a run that starts over neither mixes with it nor deletes it.
        Returns (that folder, the names moved), or None when there was nothing to move."""
        present = [name for name in PROGRESS if (self.root / name).exists()]
        if not present:
            return None
        target = self.root / "replaced" / time.strftime("%Y%m%d-%H%M%S")
        suffix = 1
        while target.exists():
            target = target.with_name(f"{target.name.split('.')[0]}.{suffix}")
            suffix += 1
        target.mkdir(parents=True)
        for name in present:
            (self.root / name).rename(target / name)
        return target, present
