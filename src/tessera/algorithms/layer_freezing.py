"""LayerFreezing: stop training the earliest layers late in the run.

From `freeze_start` (a fraction of the run) to the end, the fraction of the model's layers that
is frozen grows linearly to `freeze_level`; frozen layers get no gradient, so their backward
cost (weight gradients) and optimizer updates are skipped. Layers are the modules with their own
parameters, in definition order. It changes the math (frozen weights stop moving).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from tessera.algorithms.common import check_range, no_effect_error
from tessera.core.algorithm import Algorithm
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "layer_freezing"


def trainable_layers(model: nn.Module) -> list[nn.Module]:
    """Modules that own parameters directly, in definition order."""
    return [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]


def freeze_layers(model: nn.Module, fraction: float) -> int:
    """Freeze the first `fraction` of the layers (no gradients); returns how many are frozen."""
    check_range(NAME, "fraction", fraction, 0.0, 1.0)
    layers = trainable_layers(model)
    count = int(fraction * len(layers))
    for layer in layers[:count]:
        for parameter in layer.parameters(recurse=False):
            parameter.requires_grad_(False)
            parameter.grad = None
    return count


def frozen_fraction(progress: float, freeze_start: float, freeze_level: float) -> float:
    if progress < freeze_start or freeze_start >= 1.0:
        return 0.0
    return freeze_level * (progress - freeze_start) / (1.0 - freeze_start)


class LayerFreezing(Algorithm):
    name = NAME
    conflicts = ("compile",)

    def __init__(self, freeze_start: float = 0.5, freeze_level: float = 1.0) -> None:
        check_range(NAME, "freeze_start", freeze_start, 0.0, 1.0, high_inclusive=False)
        check_range(NAME, "freeze_level", freeze_level, 0.0, 1.0)
        self.freeze_start, self.freeze_level = freeze_start, freeze_level
        self.frozen = 0

    def match(self, event: Event, state: State) -> bool:
        return event in (Event.FIT_START, Event.EPOCH_END)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.FIT_START:
            if not trainable_layers(state.model):
                raise no_effect_error(NAME, "the model has no layers with parameters")
            if self.frozen:  # resumed: re-freeze what the checkpointed run had frozen
                self._freeze(state, self.frozen)
            return
        fraction = frozen_fraction(state.progress(), self.freeze_start, self.freeze_level)
        count = int(fraction * len(trainable_layers(state.model)))
        if count > self.frozen:
            self._freeze(state, count)
            logger.log_metrics({"layer_freezing/frozen_layers": count}, state.timestamp.batch)

    def _freeze(self, state: State, count: int) -> None:
        layers = trainable_layers(state.model)
        for layer in layers[:count]:
            for parameter in layer.parameters(recurse=False):
                parameter.requires_grad_(False)
                parameter.grad = None
        self.frozen = count

    def state_dict(self) -> dict[str, Any]:
        return {"frozen": self.frozen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.frozen = int(state["frozen"])
