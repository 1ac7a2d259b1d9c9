"""LayerFreezing: stop training the earliest layers late in the run.

From `freeze_start` (a fraction of the run) to the end, the fraction of the model's layers that
is frozen grows linearly to `freeze_level`; frozen layers get no gradient, so their backward
cost (weight gradients) and optimizer updates are skipped. Layers are the modules with their own
parameters, in definition order. It changes the math (frozen weights stop moving).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field
from torch import nn

from tessera.algorithms.common import check_range, no_effect_error
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "layer_freezing"
__all__ = ["LayerFreezing", "LayerFreezingConfig", "freeze_layers", "frozen_fraction"]


class LayerFreezingConfig(ComponentConfig):
    freeze_start: float = Field(
        0.5, ge=0.0, lt=1.0, description="fraction of the run after which freezing begins"
    )
    freeze_level: float = Field(
        1.0, gt=0.0, le=1.0, description="fraction of the layers frozen at the end of the run"
    )


def trainable_layers(model: nn.Module) -> list[nn.Module]:
    """Modules that own parameters directly, in definition order."""
    return [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]


def freeze_layers(model: nn.Module, fraction: float) -> int:
    """Freeze the first `fraction` of the layers (no gradients); returns how many are frozen."""
    check_range(NAME, "fraction", fraction, 0.0, 1.0)
    layers = trainable_layers(model)
    count = int(fraction * len(layers))
    _freeze_first(layers, count)
    return count


def _freeze_first(layers: list[nn.Module], count: int) -> None:
    for layer in layers[:count]:
        for parameter in layer.parameters(recurse=False):
            parameter.requires_grad_(False)
            parameter.grad = None


def frozen_fraction(progress: float, freeze_start: float, freeze_level: float) -> float:
    """The fraction of layers frozen at a fraction `progress` of the run (linear ramp)."""
    if progress < freeze_start or freeze_start >= 1.0:
        return 0.0
    return freeze_level * (progress - freeze_start) / (1.0 - freeze_start)


class LayerFreezing(Algorithm):
    name = NAME
    Config = LayerFreezingConfig
    conflicts = ("compile",)

    def __init__(self, config: LayerFreezingConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
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
        c = self.config
        fraction = frozen_fraction(state.progress(), c.freeze_start, c.freeze_level)
        count = int(fraction * len(trainable_layers(state.model)))
        if count > self.frozen:
            self._freeze(state, count)
            logger.log_metrics({"layer_freezing/frozen_layers": count}, state.timestamp.batch)

    def _freeze(self, state: State, count: int) -> None:
        _freeze_first(trainable_layers(state.model), count)
        self.frozen = count

    def state_dict(self) -> dict[str, Any]:
        return {"frozen": self.frozen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.frozen = int(state["frozen"])
