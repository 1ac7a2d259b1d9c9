"""The engine runs algorithms and callbacks at each event.

Before the run it checks declared conflicts and orders algorithms by their `runs_before` /
`runs_after` constraints (stable: otherwise the order they were given). With `profile=True` it
times every hook at every event, so a slow one can be found.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tessera.core.algorithm import Algorithm
from tessera.core.callback import Callback
from tessera.core.errors import ConfigError
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State


def _name(algorithm: Algorithm) -> str:
    return algorithm.name or type(algorithm).__name__


def check_conflicts(algorithms: Sequence[Algorithm]) -> None:
    """Refuse a set of algorithms in which one declares a conflict with another."""
    names = {_name(a) for a in algorithms}
    for algorithm in algorithms:
        for other in algorithm.conflicts:
            if other in names and other != _name(algorithm):
                raise ConfigError(
                    f"algorithms '{_name(algorithm)}' and '{other}' cannot be used together "
                    f"('{_name(algorithm)}' declares a conflict with '{other}'); remove one of them"
                )


def order_algorithms(algorithms: Sequence[Algorithm]) -> list[Algorithm]:
    """Order algorithms so every `runs_before`/`runs_after` constraint holds.

    Kahn's topological sort that always takes the earliest-given ready algorithm, so the given
    order is kept wherever no constraint says otherwise. A cycle is a configuration error.
    """
    check_conflicts(algorithms)
    index_of = {_name(a): i for i, a in enumerate(algorithms)}
    successors: dict[int, set[int]] = defaultdict(set)
    for i, algorithm in enumerate(algorithms):
        for later in algorithm.runs_before:
            if later in index_of:
                successors[i].add(index_of[later])
        for earlier in algorithm.runs_after:
            if earlier in index_of:
                successors[index_of[earlier]].add(i)
    indegree = [0] * len(algorithms)
    for targets in successors.values():
        for target in targets:
            indegree[target] += 1
    ready = sorted(i for i, degree in enumerate(indegree) if degree == 0)
    ordered: list[int] = []
    while ready:
        current = ready.pop(0)
        ordered.append(current)
        for target in sorted(successors[current]):
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
                ready.sort()
    if len(ordered) != len(algorithms):
        stuck = [_name(algorithms[i]) for i in range(len(algorithms)) if i not in ordered]
        raise ConfigError(
            "algorithms " + ", ".join(f"'{n}'" for n in stuck) + " declare run-before/after "
            "constraints that contradict each other; remove one of them"
        )
    return [algorithms[i] for i in ordered]


class Engine:
    """Fires events: algorithms first (in checked order), then callbacks (in the given order)."""

    def __init__(
        self,
        state: State,
        logger: Logger,
        algorithms: Sequence[Algorithm] = (),
        callbacks: Sequence[Callback] = (),
        profile: bool = False,
    ) -> None:
        self.state = state
        self.logger = logger
        self.algorithms = order_algorithms(algorithms)
        self.callbacks = list(callbacks)
        self.profile = profile
        self.timings: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
        # Per event, the bound callback methods that exist, so firing costs no lookups.
        self._callback_hooks: dict[Event, list[tuple[str, Callable[..., Any]]]] = {
            event: [
                (type(cb).__name__, getattr(cb, event.value))
                for cb in self.callbacks
                if callable(getattr(cb, event.value, None))
            ]
            for event in Event
        }

    def run_event(self, event: Event) -> None:
        state, logger = self.state, self.logger
        if self.profile:
            self._run_profiled(event)
            return
        for algorithm in self.algorithms:
            if algorithm.match(event, state):
                algorithm.apply(event, state, logger)
        for _, hook in self._callback_hooks[event]:
            hook(state, logger)

    def _run_profiled(self, event: Event) -> None:
        state, logger = self.state, self.logger
        for algorithm in self.algorithms:
            start = time.perf_counter()
            if algorithm.match(event, state):
                algorithm.apply(event, state, logger)
            self._record(event, _name(algorithm), start)
        for name, hook in self._callback_hooks[event]:
            start = time.perf_counter()
            hook(state, logger)
            self._record(event, name, start)

    def _record(self, event: Event, name: str, start: float) -> None:
        entry = self.timings[(event.value, name)]
        entry[0] += time.perf_counter() - start
        entry[1] += 1

    def timing_report(self, top: int = 20) -> list[tuple[str, str, float, int]]:
        """The slowest (event, hook, total seconds, calls), slowest first."""
        rows = [
            (event, name, total, int(calls))
            for (event, name), (total, calls) in self.timings.items()
        ]
        return sorted(rows, key=lambda row: row[2], reverse=True)[:top]

    def close(self) -> None:
        """Close every callback, even when one of them fails; the first error is raised."""
        first_error: BaseException | None = None
        for callback in self.callbacks:
            try:
                callback.close(self.state, self.logger)
            except Exception as error:
                first_error = first_error or error
        if first_error is not None:
            raise first_error
