"""Optimizers with decoupled weight decay, and parameter grouping.

Decoupled weight decay (Loshchilov & Hutter) shrinks weights by lr·wd directly instead of adding
wd·w to the gradient, so the decay does not interact with momentum or adaptive scaling.
`torch.optim.AdamW` already decouples; `SGDW` does the same for SGD with momentum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from tessera.core.component import ComponentConfig


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


class OptimizerConfig(ComponentConfig):
    """The recipe's `optimizer:` section (and the trainer's default optimizer)."""

    name: Literal["sgdw", "adamw", "sgd", "adam"] = Field("sgdw", description="optimizer")
    lr: float = Field(0.1, gt=0, allow_inf_nan=False, description="peak learning rate")
    weight_decay: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="weight decay (decoupled for sgdw/adamw)"
    )
    momentum: float | None = Field(None, ge=0, lt=1, description="momentum (SGD family)")
    nesterov: bool | None = Field(None, description="Nesterov momentum (SGD family)")
    betas: tuple[float, float] | None = Field(None, description="Adam betas")
    eps: float | None = Field(None, gt=0, allow_inf_nan=False, description="Adam epsilon")
    decay_norm_and_bias: bool = Field(False, description="also decay 1-D params (norms, biases)")
    foreach: bool | None = Field(None, description="use the multi-tensor (foreach) kernels")

    @model_validator(mode="after")
    def _options_of_family(self) -> OptimizerConfig:
        adam = self.name in ("adamw", "adam")
        given = {
            key
            for key in ("momentum", "nesterov", "betas", "eps")
            if getattr(self, key) is not None
        }
        wrong = given & ({"momentum", "nesterov"} if adam else {"betas", "eps"})
        if wrong:
            use = "betas/eps" if adam else "momentum/nesterov"
            raise ValueError(f"{', '.join(sorted(wrong))} do not apply to {self.name}; use {use}")
        if self.betas is not None and not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError(f"betas {self.betas} must each be in [0, 1)")
        return self

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimizer over `model`'s trainable parameters (no decay on 1-D ones by default)."""
        groups = parameter_groups(model, self.weight_decay, self.decay_norm_and_bias)
        options: dict[str, Any] = {"lr": self.lr}
        for key in ("momentum", "nesterov", "betas", "eps", "foreach"):
            value = getattr(self, key)
            if value is not None:
                options[key] = value
        return OPTIMIZERS[self.name](groups, **options)
