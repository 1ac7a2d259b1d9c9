"""`LossGuard`: keep a run alive through loss spikes and NaNs.

Each batch, before the optimizer step, the guard reads the batch's loss (the mean over ranks,
so every rank decides alike). A loss that is not finite, or above `spike_factor` x the median
of the last `window` good losses, is a bad batch: its optimizer step is skipped (the weights
and optimizer state stay as they were; the batch still counts, so the data moves on). After
`max_bad_in_a_row` bad batches in a row the guard asks the trainer to roll back: to the newest
good checkpoint at or before the batch where the streak began (minus `rewind` batches), with
the data position kept past the bad batches and the learning rates scaled by `lr_factor`.
After `max_rollbacks` rollbacks it stops the run with the reason instead of looping.

Cost: one device-to-host read of the loss per batch (a sync on GPU). Metrics, on every bad
batch and rollback: `guard/skipped_steps`, `guard/rollbacks`, `guard/bad_loss`,
`guard/median_loss`; the last values reach the run registry with the run's other metrics.

Uses two trainer hooks: `state.skip_optimizer_step()` (at BEFORE_OPTIMIZER_STEP) and
`state.request_rollback(before_batch, lr_factor, reason)` (carried out at the batch's end).
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import deque
from typing import TYPE_CHECKING, Any

from pydantic import Field

from tessera.core.callback import Callback
from tessera.core.component import ComponentConfig

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

log = logging.getLogger(__name__)


class LossGuardConfig(ComponentConfig):
    spike_factor: float = Field(
        4.0, gt=1, description="a loss above this x the running median is a spike"
    )
    window: int = Field(64, ge=1, description="good batches the running median is taken over")
    warmup: int = Field(
        16, ge=1, description="good batches seen before spikes are judged (NaNs always are)"
    )
    max_bad_in_a_row: int = Field(
        3, ge=1, description="bad batches in a row that trigger a rollback"
    )
    lr_factor: float = Field(
        0.5, gt=0, le=1, description="learning rates are multiplied by this at each rollback"
    )
    rewind: int = Field(
        0, ge=0, description="roll back this many batches further than the streak's start"
    )
    max_rollbacks: int = Field(5, ge=0, description="after this many rollbacks, stop the run")


class LossGuard(Callback):
    """Skips the optimizer step of bad batches; rolls back after a streak of them."""

    Config = LossGuardConfig

    def __init__(self, config: LossGuardConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.losses: deque[float] = deque(maxlen=self.config.window)
        self.bad_in_a_row = 0
        self.streak_start: int | None = None
        self.skipped = 0
        self.rollbacks = 0

    def before_optimizer_step(self, state: State, logger: Logger) -> None:
        if state.batch_loss is None:
            return
        from tessera.core import world

        loss = float(world.all_reduce_mean(state.batch_loss.detach()))  # the one host sync
        median = statistics.median(self.losses) if self.losses else math.nan
        judged = len(self.losses) >= self.config.warmup
        spike = judged and loss > self.config.spike_factor * median
        if math.isfinite(loss) and not spike:
            self.losses.append(loss)
            self.bad_in_a_row, self.streak_start = 0, None
            return
        state.skip_optimizer_step()
        batch = state.timestamp.batch  # batches done before this one
        self.skipped += 1
        self.bad_in_a_row += 1
        if self.streak_start is None:
            self.streak_start = batch
        what = "not finite" if not math.isfinite(loss) else f"{loss / median:.1f}x the median"
        log.warning("loss guard: batch %d loss %s is %s; optimizer step skipped", batch, loss, what)
        metrics = {
            "guard/skipped_steps": self.skipped,
            "guard/rollbacks": self.rollbacks,
            "guard/bad_loss": loss,
            "guard/median_loss": median,
        }
        if self.bad_in_a_row >= self.config.max_bad_in_a_row:
            self._roll_back(state, batch, what, metrics)
        logger.log_metrics(metrics, step=batch)

    def _roll_back(self, state: State, batch: int, what: str, metrics: dict[str, float]) -> None:
        streak, start = self.bad_in_a_row, self.streak_start or batch
        self.bad_in_a_row, self.streak_start = 0, None
        if self.rollbacks >= self.config.max_rollbacks:
            state.request_stop(
                f"loss guard: {streak} bad batches in a row (the last {what}) after "
                f"{self.rollbacks} rollbacks; the run is diverging: lower the learning rate, "
                f"check the data near batch {batch}, or raise max_rollbacks"
            )
            return
        self.rollbacks += 1
        metrics["guard/rollbacks"] = self.rollbacks
        target = max(start - self.config.rewind, 0)
        reason = f"loss guard: {streak} bad batches in a row from batch {start} (last {what})"
        state.request_rollback(target, self.config.lr_factor, reason)

    # Counters only grow: a rollback restores this callback's state from an older checkpoint,
    # and must not reset them (a fresh process resuming starts below any saved value anyway).
    def state_dict(self) -> dict[str, Any]:
        return {
            "losses": list(self.losses),
            "bad_in_a_row": self.bad_in_a_row,
            "streak_start": self.streak_start,
            "skipped": self.skipped,
            "rollbacks": self.rollbacks,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses = deque(state.get("losses", []), maxlen=self.config.window)
        self.bad_in_a_row = int(state.get("bad_in_a_row", 0))
        self.streak_start = state.get("streak_start")
        self.skipped = max(self.skipped, int(state.get("skipped", 0)))
        self.rollbacks = max(self.rollbacks, int(state.get("rollbacks", 0)))
