"""FusedOptimizer: switch the optimizer to its multi-tensor ('foreach') or fused kernels.

PyTorch's optimizers can update all parameters with a handful of batched kernels instead of one
small kernel per tensor. The update is the same arithmetic, so results match the per-tensor
loop up to floating-point rounding. 'fused' needs an optimizer and device that support it
(Adam, AdamW, SGD, Adagrad on CUDA and CPU in recent PyTorch); otherwise an error says so.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field

from tessera.algorithms.common import check_fields
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "fused_optimizer"
__all__ = ["FusedOptimizer", "FusedOptimizerConfig", "use_fused_kernels"]


class FusedOptimizerConfig(ComponentConfig):
    kind: Literal["foreach", "fused"] = Field(
        "foreach",
        description="'foreach': a few multi-tensor kernels per step; 'fused': one fused kernel "
        "(AdamW, Adam, SGD, Adagrad)",
    )


def use_fused_kernels(optimizer: torch.optim.Optimizer, kind: str = "foreach") -> None:
    """Set every param group of `optimizer` to the 'foreach' or 'fused' implementation."""
    check_fields(FusedOptimizerConfig, NAME, kind=kind)
    accepted = inspect.signature(type(optimizer).__init__).parameters
    if kind not in accepted:
        raise ConfigError(
            f"algorithm '{NAME}': {type(optimizer).__name__} has no '{kind}' implementation; "
            f"use kind='foreach' or an optimizer such as AdamW or SGD"
        )
    other = "fused" if kind == "foreach" else "foreach"
    for group in optimizer.param_groups:
        group[kind] = True
        if other in group:
            group[other] = False if other == "fused" else None
    optimizer.defaults[kind] = True
    if kind == "fused":
        # A fused step unscales gradients itself when a GradScaler hands it the scale.
        optimizer._step_supports_amp_scaling = True  # type: ignore[attr-defined]


class FusedOptimizer(Algorithm):
    name = NAME
    Config = FusedOptimizerConfig
    runs_before = ("sam",)

    def match(self, event: Event, state: State) -> bool:
        return event == Event.INIT

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if not state.optimizers:
            raise ConfigError(f"algorithm '{NAME}' changes the optimizer, but the run has none")
        for optimizer in state.optimizers:
            use_fused_kernels(getattr(optimizer, "base", optimizer), self.config.kind)
