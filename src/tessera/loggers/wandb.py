"""`WandBLogger`: metrics and hyperparameters to Weights & Biases (online, or offline files).

    loggers:
      wandb: {project: my-project, mode: offline}

Needs `pip install 'tessera-train[wandb]'`, imported only when the logger is made. `mode`:
'online', 'offline' (files only, upload later with `wandb sync`) or unset (W&B's own setting,
`WANDB_MODE`). Files go under `dir`, by default the run folder (`runs/NAME/wandb/`). The W&B
run is named after the Tessera run and holds the recipe as its config; metrics keep their
names (`loss/train`, W&B groups them by the prefix) at the trainer's batch as the step. W&B's
console capture is off (the progress bar stays intact). Only rank 0 writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tessera.core.component import ComponentConfig
from tessera.core.errors import UserError
from tessera.core.logger import LoggerDestination

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

MODES = ("online", "offline", "disabled")


def _wandb() -> Any:
    try:
        import wandb
    except ImportError as error:
        raise UserError(
            "loggers.wandb needs the 'wandb' package, which is not installed; run "
            "pip install 'tessera-train[wandb]' or remove the wandb logger"
        ) from error
    return wandb


class WandBConfig(ComponentConfig):
    project: str = Field("tessera", min_length=1, description="W&B project")
    name: str | None = Field(None, description="run name (default: the run's name)")
    entity: str | None = Field(None, description="W&B entity (team or user)")
    group: str | None = Field(None, description="run group")
    tags: list[str] = Field(default_factory=list, description="run tags")
    mode: Literal["online", "offline", "disabled"] | None = Field(
        None, description="online, offline or disabled (default: W&B's own setting)"
    )
    dir: str | None = Field(None, description="where W&B writes (default: the run folder)")


class WandBLogger(LoggerDestination):
    Config = WandBConfig

    def __init__(self, config: WandBConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        c = self.config
        project, name, entity, group, tags, mode, dir = (
            c.project,
            c.name,
            c.entity,
            c.group,
            c.tags,
            c.mode,
            c.dir,
        )
        self._wandb = _wandb()  # fail at build time, not mid-run
        self.project, self.name, self.entity, self.group = project, name, entity, group
        self.tags = [str(tag) for tag in tags or []]
        self.mode = mode
        self.dir = Path(dir) if dir is not None else None
        self.active = True
        self.run: Any = None
        self.finished = False

    def init(self, state: State, logger: Logger) -> None:
        self.active = state.rank == 0
        self.name = self.name or state.run_name
        if self.dir is None and state.run_dir is not None:
            self.dir = state.run_dir

    def _get_run(self, config: dict[str, Any] | None = None) -> Any:
        if self.run is None:
            folder = self.dir or Path.cwd()
            folder.mkdir(parents=True, exist_ok=True)
            self.run = self._wandb.init(
                project=self.project,
                name=self.name,
                entity=self.entity,
                group=self.group,
                tags=self.tags or None,
                mode=self.mode,
                dir=str(folder),
                config=config,
                settings=self._wandb.Settings(console="off", silent=True),
            )
        elif config:
            self.run.config.update(config, allow_val_change=True)
        return self.run

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if self.active and not self.finished:
            self._get_run().log({name: float(value) for name, value in metrics.items()}, step=step)

    def log_hyperparameters(self, hyperparameters: dict[str, Any]) -> None:
        if self.active and not self.finished:
            self._get_run(hyperparameters)

    def fit_end(self, state: State, logger: Logger) -> None:
        self._finish(0)

    def close(self, state: State, logger: Logger) -> None:
        self._finish(1)  # only reached unfinished when the run ended with an error

    def _finish(self, exit_code: int) -> None:
        if self.run is not None and not self.finished:
            self.run.finish(exit_code=exit_code)
            self.finished = True
