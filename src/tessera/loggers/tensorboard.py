"""`TensorBoardLogger`: metrics as TensorBoard scalars, through `torch.utils.tensorboard`.

Needs the `tensorboard` package (`pip install 'tessera-train[tensorboard]'`), imported only when
the logger is made. Hyperparameters are written as a text summary (a JSON code block).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from tessera.core.component import ComponentConfig
from tessera.core.errors import UserError
from tessera.core.logger import LoggerDestination
from tessera.loggers.registry import RunPath, inside_run

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State


def _summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise UserError(
            "loggers.tensorboard needs the 'tensorboard' package, which is not installed; run "
            "pip install 'tessera-train[tensorboard]' or remove the tensorboard logger"
        ) from error
    return SummaryWriter


class TensorBoardConfig(ComponentConfig):
    log_dir: RunPath = Field(
        Path("tensorboard"), description="folder of event files (relative: inside the run folder)"
    )
    flush_secs: int = Field(30, ge=1, strict=True, description="seconds between flushes to disk")


class TensorBoardLogger(LoggerDestination):
    """Writes event files under `log_dir` (view with `tensorboard --logdir <log_dir>`)."""

    Config = TensorBoardConfig

    def __init__(self, config: TensorBoardConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self._writer_class = _summary_writer_class()  # fail at build time, not mid-run
        self.log_dir = self.config.log_dir
        self.active = True
        self._writer: Any = None

    @classmethod
    def from_config(cls, config: TensorBoardConfig, run_dir: Path | None = None, **context: Any):
        return cls(config.model_copy(update={"log_dir": inside_run(config.log_dir, run_dir)}))

    def init(self, state: State, logger: Logger) -> None:
        self.log_dir = inside_run(self.log_dir, state.run_dir)  # a relative path from Python
        self.active = state.rank == 0

    def _get_writer(self) -> Any:
        if self._writer is None:
            self._writer = self._writer_class(str(self.log_dir), flush_secs=self.config.flush_secs)
        return self._writer

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if not self.active:
            return
        writer = self._get_writer()
        for name, value in metrics.items():
            writer.add_scalar(name, float(value), global_step=step)

    def log_hyperparameters(self, hyperparameters: dict[str, Any]) -> None:
        if not self.active:
            return
        text = json.dumps(hyperparameters, indent=2, default=str)
        # Indented by four spaces, TensorBoard's markdown shows it as a code block.
        block = "\n".join("    " + line for line in text.splitlines())
        self._get_writer().add_text("hyperparameters", block)

    def close(self, state: State, logger: Logger) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
