"""GhostBatchNorm (Hoffer et al., 2017): batch statistics over small virtual batches.

In training, each BatchNorm normalises chunks of `ghost_batch_size` samples with their own
statistics, which regularises like a small batch while keeping the large batch's throughput.
The same BatchNorm parameters and running statistics are used (updated once per chunk).
Evaluation is unchanged. It changes the math.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field
from torch import nn

from tessera.algorithms.common import check_fields, no_effect_error, warn_no_effect
from tessera.algorithms.surgery import replace_modules
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "ghost_batchnorm"
BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
__all__ = ["GhostBatchNormAlgorithm", "GhostBatchNormConfig", "apply_ghost_batchnorm"]


class GhostBatchNormConfig(ComponentConfig):
    ghost_batch_size: int = Field(
        32, ge=2, description="samples per virtual batch whose statistics normalise it"
    )


class GhostBatchNorm(nn.Module):
    """Runs the wrapped BatchNorm separately on chunks of the batch during training."""

    def __init__(self, batchnorm: nn.modules.batchnorm._BatchNorm, ghost_batch_size: int):
        super().__init__()
        self.batchnorm = batchnorm
        self.train(batchnorm.training)
        self.ghost_batch_size = ghost_batch_size

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.training or inputs.shape[0] <= self.ghost_batch_size:
            return self.batchnorm(inputs)
        chunks = inputs.split(self.ghost_batch_size, dim=0)
        return torch.cat([self.batchnorm(chunk) for chunk in chunks], dim=0)

    def extra_repr(self) -> str:
        return f"ghost_batch_size={self.ghost_batch_size}"


def apply_ghost_batchnorm(model: nn.Module, ghost_batch_size: int = 32) -> int:
    """Wrap every BatchNorm; returns how many (the parameters stay the same objects)."""
    check_fields(GhostBatchNormConfig, NAME, ghost_batch_size=ghost_batch_size)

    def policy(_: str, module: nn.Module) -> nn.Module | None:
        if isinstance(module, BATCHNORM_TYPES):
            return GhostBatchNorm(module, ghost_batch_size)
        return None

    count = len(replace_modules(model, policy))
    if count == 0:
        warn_no_effect(NAME, "the model has no BatchNorm layers")
    return count


class GhostBatchNormAlgorithm(Algorithm):
    name = NAME
    Config = GhostBatchNormConfig
    conflicts = ("low_precision_norm",)
    runs_before = ("compile",)

    def match(self, event: Event, state: State) -> bool:
        return event == Event.INIT

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if not any(isinstance(m, BATCHNORM_TYPES) for m in state.model.modules()):
            raise no_effect_error(NAME, "the model has no BatchNorm layers")
        apply_ghost_batchnorm(state.model, self.config.ghost_batch_size)
