"""Algorithms change training: model surgery, batch transforms, loss changes, optimizer wraps.

Each speed-up method is an `Algorithm` subclass: `match` says whether it acts on an event,
`apply` does it. Class attributes declare how it composes with others; the engine checks
conflicts and orders algorithms before the run starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from tessera.core.component import Configurable

if TYPE_CHECKING:
    from tessera.core.event import Event
    from tessera.core.logger import Logger
    from tessera.core.state import State


class Algorithm(Configurable):
    """A speed-up method attached to training events; its options are `self.config` (`Config`).

    name: registry name (`"label_smoothing"`), used in errors and checkpoints.
    conflicts: names of algorithms that cannot be used together with this one.
    runs_before / runs_after: names this one must precede / follow at shared events.
    """

    name: ClassVar[str] = ""
    conflicts: ClassVar[tuple[str, ...]] = ()
    runs_before: ClassVar[tuple[str, ...]] = ()
    runs_after: ClassVar[tuple[str, ...]] = ()

    def match(self, event: Event, state: State) -> bool:
        raise NotImplementedError

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
