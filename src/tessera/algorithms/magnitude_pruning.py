"""Gradual magnitude pruning (Zhu & Gupta, 2017): zero the smallest weights on a schedule.

Between `start` and `end` (fractions of the run) the sparsity of every prunable weight
(Linear and Conv2d, excluding the first conv and the last linear by default) rises along the
cubic schedule s(t) = s_target * (1 - (1 - t)^3), re-computed every `update_interval` batches;
after each optimizer step the masked weights are set back to zero. The masks are checkpointed.
It changes the math: a sparse model whose zeros a sparse kernel can skip at inference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field, model_validator
from torch import nn

from tessera.algorithms.common import check_range, no_effect_error
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.errors import CheckpointError
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "magnitude_pruning"
__all__ = [
    "MagnitudePruning",
    "MagnitudePruningConfig",
    "cubic_sparsity",
    "magnitude_mask",
    "measured_sparsity",
    "prune_model",
]


class MagnitudePruningConfig(ComponentConfig):
    target_sparsity: float = Field(
        0.5, gt=0.0, lt=1.0, description="fraction of each prunable weight zeroed at `end`"
    )
    start: float = Field(
        0.1, ge=0.0, le=1.0, description="fraction of the run where pruning starts"
    )
    end: float = Field(
        0.7, ge=0.0, le=1.0, description="fraction of the run where the target is reached"
    )
    update_interval: int = Field(10, ge=1, description="batches between mask updates")
    skip_first_and_last: bool = Field(
        True, description="leave the first and the last Linear/Conv2d layer dense"
    )

    @model_validator(mode="after")
    def _start_before_end(self) -> MagnitudePruningConfig:
        if self.start > self.end:
            raise ValueError(f"start ({self.start}) must not be after end ({self.end})")
        return self


def prunable_weights(model: nn.Module, skip_first_and_last: bool = True) -> dict[str, nn.Parameter]:
    """The weights of Linear and Conv2d layers, by parameter name."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if skip_first_and_last and len(layers) > 2:
        layers = layers[1:-1]
    return {f"{n}.weight" if n else "weight": m.weight for n, m in layers}


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """A 0/1 mask that zeros the `sparsity` fraction of entries with the smallest magnitude."""
    check_range(NAME, "sparsity", sparsity, 0.0, 1.0, high_inclusive=False)
    count = int(sparsity * weight.numel())
    if count == 0:
        return torch.ones_like(weight, dtype=torch.bool)
    threshold = weight.detach().abs().flatten().kthvalue(count).values
    return weight.detach().abs() > threshold


def cubic_sparsity(progress: float, target: float, start: float, end: float) -> float:
    """The scheduled sparsity at a fraction `progress` of the run."""
    if progress < start:
        return 0.0
    if progress >= end or end <= start:
        return target
    fraction = (progress - start) / (end - start)
    return target * (1.0 - (1.0 - fraction) ** 3)


@torch.no_grad()
def prune_model(
    model: nn.Module, sparsity: float, skip_first_and_last: bool = True
) -> dict[str, torch.Tensor]:
    """Zero the smallest weights of each prunable layer; returns the masks by name."""
    masks = {}
    for name, weight in prunable_weights(model, skip_first_and_last).items():
        mask = magnitude_mask(weight, sparsity)
        weight.mul_(mask)
        masks[name] = mask
    return masks


def measured_sparsity(model: nn.Module, skip_first_and_last: bool = True) -> float:
    """The fraction of zeros over all prunable weights."""
    weights = list(prunable_weights(model, skip_first_and_last).values())
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / max(1, sum(w.numel() for w in weights))


class MagnitudePruning(Algorithm):
    name = NAME
    Config = MagnitudePruningConfig
    runs_after = ("squeeze_excite", "factorize")
    runs_before = ("ema", "swa")

    def __init__(self, config: MagnitudePruningConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.masks: dict[str, torch.Tensor] = {}
        self.sparsity = 0.0

    def match(self, event: Event, state: State) -> bool:
        return event in (Event.FIT_START, Event.AFTER_OPTIMIZER_STEP)

    @torch.no_grad()
    def apply(self, event: Event, state: State, logger: Logger) -> None:
        c = self.config
        weights = prunable_weights(state.unwrapped_model, c.skip_first_and_last)
        if event == Event.FIT_START:
            if not weights:
                raise no_effect_error(NAME, "the model has no Linear or Conv2d weights to prune")
            if set(self.masks) - set(weights):
                raise CheckpointError(
                    "the checkpoint's pruning masks name layers the model does not have: "
                    f"{sorted(set(self.masks) - set(weights))[:3]}"
                )
            for name, mask in self.masks.items():
                self.masks[name] = mask.to(weights[name].device)
                weights[name].mul_(self.masks[name])
            return
        batch = state.timestamp.batch
        target = cubic_sparsity(state.progress(), c.target_sparsity, c.start, c.end)
        if batch % c.update_interval == 0 and target > self.sparsity:
            self.masks = prune_model(state.unwrapped_model, target, c.skip_first_and_last)
            self.sparsity = target
            logger.log_metrics({"magnitude_pruning/sparsity": target}, batch)
        for name, mask in self.masks.items():
            weights[name].mul_(mask)

    def state_dict(self) -> dict[str, Any]:
        return {"masks": dict(self.masks), "sparsity": self.sparsity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.masks = dict(state.get("masks") or {})
        self.sparsity = float(state.get("sparsity", 0.0))
