"""`Interval`: 'every 500ba', 'every 1ep', 'every 0.1dur' as a test on (state, event).

Intervals fire at BATCH_END when the count in their unit crosses a multiple of the interval,
and at EPOCH_END for epoch intervals. The end of the run always counts, so a final evaluation
or checkpoint is never skipped.
"""

from __future__ import annotations

from tessera.core.event import Event
from tessera.core.state import State
from tessera.core.time import Time, TimeUnit


class Interval:
    def __init__(self, time: Time | str | int, field_name: str = "interval") -> None:
        self.time = Time.coerce(time, field_name)
        self.field_name = field_name
        self._last_fired: float | None = None

    def due(self, state: State, event: Event) -> bool:
        interval = state.resolve(self.time, self.field_name)
        state.check_token_unit(interval, self.field_name)
        if interval.value <= 0:
            return False
        at_end = state.is_done() and (
            event == Event.EPOCH_END or (event == Event.BATCH_END and not state.epoch_complete)
        )
        if interval.unit == TimeUnit.EPOCH:
            due = event == Event.EPOCH_END and state.timestamp.epoch % interval.value == 0
        elif event == Event.BATCH_END:
            count = state.timestamp.get(interval.unit)
            previous = count - self._last_step(state, interval.unit)
            due = count // interval.value > previous // interval.value
        else:
            due = False
        # Never fire twice for the same moment (e.g. BATCH_END then EPOCH_END at the end).
        moment = float(state.timestamp.batch)
        if (due or at_end) and self._last_fired != moment:
            self._last_fired = moment
            return True
        return False

    @staticmethod
    def _last_step(state: State, unit: TimeUnit) -> int:
        """How much the count in `unit` grew in the last batch."""
        if unit == TimeUnit.BATCH:
            return 1
        if unit == TimeUnit.SAMPLE:
            return state.last_batch_samples
        return state.last_batch_tokens
