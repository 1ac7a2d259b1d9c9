"""`RollbackHandler`: carries out `state.request_rollback(...)` at the end of a batch.

A callback that guards training (a loss-spike or NaN watcher) asks for a rollback; this puts the
weights, optimizer, schedules and method state back to the newest checkpoint at or before the
batch it names, while the clock, the data stream and the random generators keep going: the
batches since that checkpoint are skipped, not replayed, so the run moves past the data that
hurt it. The learning rates are then scaled by the requested factor, durably (the scale lives in
the schedulers' checkpointed state).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tessera.core.callback import Callback
from tessera.core.checkpointer import Checkpointer
from tessera.core.determinism import load_rng_state, rng_state
from tessera.core.errors import CheckpointError
from tessera.core.resumable import resumable_part

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

log = logging.getLogger(__name__)


class RollbackHandler(Callback):
    def __init__(self, checkpointer: Checkpointer) -> None:
        super().__init__()
        self.checkpointer = checkpointer
        self.count = 0

    def batch_end(self, state: State, logger: Logger) -> None:
        request, state.rollback = state.rollback, None
        if request is None:
            return
        path = self.checkpointer.latest_valid(before_batch=request.before_batch)
        if path is None:
            raise CheckpointError(
                f"a rollback to batch {request.before_batch} or earlier was asked for "
                f"({request.reason or 'no reason given'}), but no checkpoint at or before it "
                "verifies; checkpoint more often (save_interval) so there is one to return to"
            )
        clock, randomness = state.timestamp, rng_state()
        data = resumable_part(state.train_dataloader)
        position = data.state_dict(clock.sample_in_epoch) if data is not None else None
        count = self.count
        self.checkpointer.load(state, path)  # restores every callback's state, this one's too
        self.count = count
        state.timestamp = clock
        load_rng_state(randomness)
        if data is not None and position is not None:
            data.load_state_dict(position)
        for scheduler in state.schedulers:
            if hasattr(scheduler, "base_lrs"):
                scheduler.base_lrs = [lr * request.lr_factor for lr in scheduler.base_lrs]
            bind_state = getattr(scheduler, "bind_state", None)
            if callable(bind_state):
                bind_state(state)
        if not state.schedulers:
            for optimizer in state.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] *= request.lr_factor
        self.count += 1
        log.warning(
            "rolled back to %s at %s (%s); learning rates x%g",
            path,
            clock,
            request.reason or "requested",
            request.lr_factor,
        )
        logger.log_metrics(
            {"rollback/count": self.count, "rollback/to_batch": request.before_batch},
            step=clock.batch,
        )

    def state_dict(self) -> dict[str, int]:
        return {"count": self.count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.count = int(state.get("count", self.count))
