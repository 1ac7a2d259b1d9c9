"""GradientClipping: bound the gradient before each optimizer step.

Three kinds: 'norm' rescales all gradients so their global L2 norm is at most `threshold`;
'value' clamps every element to [-threshold, threshold]; 'adaptive' (AGC, Brock et al., 2021)
rescales each output unit's gradient so that its norm is at most `threshold` times the norm of
that unit's weights. It changes the math only when clipping triggers; it buys stability (larger
learning rates, no loss spikes) rather than speed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field

from tessera.algorithms.common import check_fields
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "gradient_clipping"
__all__ = ["GradientClipping", "GradientClippingConfig", "adaptive_clip_", "clip_gradients"]


class GradientClippingConfig(ComponentConfig):
    clipping_type: Literal["norm", "value", "adaptive"] = Field(
        "norm",
        description="'norm': global L2 norm; 'value': each element; 'adaptive': each unit's "
        "norm relative to its weights (AGC)",
    )
    threshold: float = Field(1.0, gt=0.0, description="the bound (for 'adaptive': a ratio)")


def _unit_norms(tensor: torch.Tensor) -> torch.Tensor:
    """Norm per output unit (first dimension) for matrices/kernels, whole-tensor otherwise."""
    if tensor.ndim <= 1:
        return tensor.norm()
    return tensor.flatten(1).norm(dim=1).view(-1, *([1] * (tensor.ndim - 1)))


def adaptive_clip_(
    parameters: Iterable[torch.nn.Parameter], threshold: float, eps: float = 1e-3
) -> None:
    """Unit-wise adaptive gradient clipping in place."""
    for parameter in parameters:
        if parameter.grad is None:
            continue
        weight_norm = _unit_norms(parameter.detach()).clamp_min(eps)
        grad_norm = _unit_norms(parameter.grad.detach())
        max_norm = weight_norm * threshold
        scale = torch.where(grad_norm > max_norm, max_norm / grad_norm.clamp_min(1e-6), 1.0)
        parameter.grad.mul_(scale)


def clip_gradients(
    parameters: Iterable[torch.nn.Parameter], clipping_type: str = "norm", threshold: float = 1.0
) -> None:
    """Clip the gradients of `parameters` in place."""
    check_fields(GradientClippingConfig, NAME, clipping_type=clipping_type, threshold=threshold)
    parameters = [p for p in parameters if p.grad is not None]
    if clipping_type == "norm":
        torch.nn.utils.clip_grad_norm_(parameters, threshold)
    elif clipping_type == "value":
        torch.nn.utils.clip_grad_value_(parameters, threshold)
    else:
        adaptive_clip_(parameters, threshold)


class GradientClipping(Algorithm):
    name = NAME
    Config = GradientClippingConfig

    def match(self, event: Event, state: State) -> bool:
        return event == Event.BEFORE_OPTIMIZER_STEP

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        c = self.config
        clip_gradients(state.model.parameters(), c.clipping_type, c.threshold)
