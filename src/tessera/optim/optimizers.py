"""Optimizers with decoupled weight decay, and parameter grouping.

Decoupled weight decay (Loshchilov & Hutter) shrinks weights by lr·wd directly instead of adding
wd·w to the gradient, so the decay does not interact with momentum or adaptive scaling.
`torch.optim.AdamW` already decouples; `SGDW` does the same for SGD with momentum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn


class SGDW(torch.optim.SGD):
    """SGD (with momentum/Nesterov) and decoupled weight decay: w -= lr * weight_decay * w."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        dampening: float = 0.0,
        foreach: bool | None = None,
    ) -> None:
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self._default_decay = weight_decay
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=0.0,
            nesterov=nesterov,
            foreach=foreach,
        )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # A group's weight_decay is applied decoupled; SGD itself must see none.
        decay = param_group.pop("weight_decay", self._default_decay)
        param_group.setdefault("decoupled_weight_decay", decay)
        param_group["weight_decay"] = 0.0
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            decay = group["decoupled_weight_decay"]
            if decay:
                params = [p for p in group["params"] if p.grad is not None]
                if params:
                    torch._foreach_mul_(params, 1 - group["lr"] * decay)
        super().step()
        return loss


class AdamW(torch.optim.AdamW):
    """Adam with decoupled weight decay (torch's implementation, named here for recipes)."""


def parameter_groups(
    model: nn.Module, weight_decay: float, decay_norm_and_bias: bool = False
) -> list[dict[str, Any]]:
    """Split parameters so biases and normalization weights (1-D) get no weight decay."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (decay if decay_norm_and_bias or parameter.ndim > 1 else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgdw": SGDW,
    "adamw": AdamW,
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
}
