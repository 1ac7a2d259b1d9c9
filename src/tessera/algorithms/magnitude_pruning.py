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
from torch import nn

from tessera.algorithms.common import check_range, no_effect_error
from tessera.core.algorithm import Algorithm
from tessera.core.errors import CheckpointError
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "magnitude_pruning"


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
    weights = list(prunable_weights(model, skip_first_and_last).values())
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / max(1, sum(w.numel() for w in weights))


class MagnitudePruning(Algorithm):
    name = NAME
    runs_after = ("squeeze_excite", "factorize")
    runs_before = ("ema", "swa")

    def __init__(
        self,
        target_sparsity: float = 0.5,
        start: float = 0.1,
        end: float = 0.7,
        update_interval: int = 10,
        skip_first_and_last: bool = True,
    ) -> None:
        check_range(NAME, "target_sparsity", target_sparsity, 0.0, 1.0, high_inclusive=False)
        check_range(NAME, "start", start, 0.0, 1.0)
        check_range(NAME, "end", end, start, 1.0)
        check_range(NAME, "update_interval", update_interval, 1, integer=True)
        self.target_sparsity, self.start, self.end = target_sparsity, start, end
        self.update_interval, self.skip_first_and_last = update_interval, skip_first_and_last
        self.masks: dict[str, torch.Tensor] = {}
        self.sparsity = 0.0

    def match(self, event: Event, state: State) -> bool:
        return event in (Event.FIT_START, Event.AFTER_OPTIMIZER_STEP)

    @torch.no_grad()
    def apply(self, event: Event, state: State, logger: Logger) -> None:
        weights = prunable_weights(state.unwrapped_model, self.skip_first_and_last)
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
        target = cubic_sparsity(state.progress(), self.target_sparsity, self.start, self.end)
        if batch % self.update_interval == 0 and target > self.sparsity:
            self.masks = prune_model(state.unwrapped_model, target, self.skip_first_and_last)
            self.sparsity = target
            logger.log_metrics({"magnitude_pruning/sparsity": target}, batch)
        for name, mask in self.masks.items():
            weights[name].mul_(mask)

    def state_dict(self) -> dict[str, Any]:
        return {"masks": dict(self.masks), "sparsity": self.sparsity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.masks = dict(state.get("masks") or {})
        self.sparsity = float(state.get("sparsity", 0.0))
