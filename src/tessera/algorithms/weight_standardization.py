"""WeightStandardization (Qiao et al., 2019): convolve with zero-mean, unit-variance weights.

Each conv's weight is standardised over its fan-in (per output channel) on every forward
pass, through `torch.nn.utils.parametrize`, so the stored parameter (the same object the
optimizer holds) stays the raw weight. It smooths the loss landscape, pairs well with
GroupNorm and small batches, and changes the math.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize

from tessera.algorithms.common import check_fields, no_effect_error, warn_no_effect
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "weight_standardization"
__all__ = [
    "WeightStandardization",
    "WeightStandardizationConfig",
    "apply_weight_standardization",
]


class WeightStandardizationConfig(ComponentConfig):
    skip_last_layers: int = Field(
        0, ge=0, description="leave this many of the model's last Conv2d layers unchanged"
    )


class Standardize(nn.Module):
    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, weight.ndim))
        mean = weight.mean(dim=dims, keepdim=True)
        var = weight.var(dim=dims, keepdim=True, unbiased=False)
        return (weight - mean) / torch.sqrt(var + self.eps)


def apply_weight_standardization(model: nn.Module, skip_last_layers: int = 0) -> int:
    """Standardise the weights of every Conv2d except the last `skip_last_layers` ones."""
    check_fields(WeightStandardizationConfig, NAME, skip_last_layers=skip_last_layers)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    chosen = convs[: len(convs) - skip_last_layers]
    for conv in chosen:
        if not parametrize.is_parametrized(conv, "weight"):
            parametrize.register_parametrization(conv, "weight", Standardize())
    if not chosen:
        warn_no_effect(NAME, "the model has no Conv2d layers to standardise")
    return len(chosen)


class WeightStandardization(Algorithm):
    name = NAME
    Config = WeightStandardizationConfig
    runs_after = ("factorize", "squeeze_excite", "blurpool")
    runs_before = ("compile",)

    def match(self, event: Event, state: State) -> bool:
        return event == Event.INIT

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        convs = sum(isinstance(m, nn.Conv2d) for m in state.model.modules())
        skip = self.config.skip_last_layers
        if convs - skip <= 0:
            raise no_effect_error(
                NAME, f"the model has {convs} Conv2d layers and skip_last_layers is {skip}"
            )
        apply_weight_standardization(state.model, skip)
