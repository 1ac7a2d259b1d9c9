"""Callbacks observe a run: implement a method named after any event (`batch_end`, ...).

A callback reads the `State` and logs through the `Logger`; it never changes what the model
computes (that is what an `Algorithm` is for). `state_dict`/`load_state_dict` put whatever it
must remember into checkpoints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tessera.core.component import Configurable

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State


class Callback(Configurable):
    """Base class: define `fit_start(self, state, logger)`, `batch_end(...)`, etc.

    Options are declared as fields of `Config` and read from `self.config`.
    """

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def close(self, state: State, logger: Logger) -> None:
        """Called once when the run ends, also after an error: release files and threads."""
