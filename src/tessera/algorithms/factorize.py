"""Factorize: replace large Linear / Conv2d layers by low-rank pairs.

A layer with weight W (out x in, or out x in*k*k for a conv) becomes two layers of rank r:
`in -> r` (a conv with the original kernel and stride) and `r -> out` (a 1x1 conv or linear).
They are initialised from the truncated SVD of W, the best rank-r approximation, so the network
starts close to where it was. FLOPs and parameters drop when r < in*out / (in + out). It changes
the math (a constrained model) and adds new parameters (swapped into the optimizer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from tessera.algorithms.common import check_fields, no_effect_error, warn_no_effect
from tessera.algorithms.surgery import replace_modules
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "factorize"
__all__ = ["Factorize", "FactorizeConfig", "apply_factorization"]


class FactorizeConfig(ComponentConfig):
    latent_features: float = Field(
        0.25,
        gt=0.0,
        description="rank of the factorization: below 1 a fraction of the smaller side, "
        "else a whole number of features",
    )
    min_features: int = Field(
        64, ge=1, description="leave layers whose smaller side is below this alone"
    )
    factorize_convs: bool = Field(True, description="factorize Conv2d layers")
    factorize_linears: bool = Field(True, description="factorize Linear layers")

    @field_validator("latent_features")
    @classmethod
    def _whole_rank(cls, latent: float) -> float:
        if latent >= 1 and latent != int(latent):
            raise ValueError("a rank of 1 or more must be a whole number (below 1: a fraction)")
        return latent

    @model_validator(mode="after")
    def _factorizes_something(self) -> FactorizeConfig:
        if not (self.factorize_convs or self.factorize_linears):
            raise ValueError(
                "factorize_convs and factorize_linears are both false, so the method would "
                "change nothing; set one of them to true or remove factorize"
            )
        return self


def _low_rank(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(left, right) with left @ right the best rank-`rank` approximation of a 2-D weight."""
    u, s, vh = torch.linalg.svd(weight.detach().float(), full_matrices=False)
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank]


class FactorizedLinear(nn.Module):
    def __init__(self, linear: nn.Linear, rank: int) -> None:
        super().__init__()
        self.first = nn.Linear(linear.in_features, rank, bias=False)
        self.second = nn.Linear(rank, linear.out_features, bias=linear.bias is not None)
        left, right = _low_rank(linear.weight, rank)
        with torch.no_grad():
            self.first.weight.copy_(right)
            self.second.weight.copy_(left)
            if linear.bias is not None:
                self.second.bias.copy_(linear.bias)
        self.to(linear.weight.device, linear.weight.dtype)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(inputs))


class FactorizedConv2d(nn.Module):
    def __init__(self, conv: nn.Conv2d, rank: int) -> None:
        super().__init__()
        self.first = nn.Conv2d(
            conv.in_channels,
            rank,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            bias=False,
            padding_mode=conv.padding_mode,
        )
        self.second = nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None)
        left, right = _low_rank(conv.weight.flatten(1), rank)
        with torch.no_grad():
            self.first.weight.copy_(right.view_as(self.first.weight))
            self.second.weight.copy_(left.view_as(self.second.weight))
            if conv.bias is not None:
                self.second.bias.copy_(conv.bias)
        self.to(conv.weight.device, conv.weight.dtype)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(inputs))


def _rank_for(rows: int, cols: int, latent: float) -> int:
    return max(1, int(latent * min(rows, cols))) if latent < 1 else int(latent)


def _saves_compute(rows: int, cols: int, rank: int) -> bool:
    return rank * (rows + cols) < rows * cols


def apply_factorization(
    model: nn.Module,
    latent_features: float = 0.25,
    min_features: int = 64,
    factorize_convs: bool = True,
    factorize_linears: bool = True,
    optimizers: torch.optim.Optimizer | list[torch.optim.Optimizer] | None = None,
) -> int:
    """Factorize layers whose smaller side is >= `min_features`, where it saves compute.

    `latent_features` below 1 is the rank as a fraction of the smaller side, else the rank.
    Grouped convs are left alone. Returns the number of layers replaced.
    """
    check_fields(FactorizeConfig, NAME, latent_features=latent_features, min_features=min_features)

    def policy(_: str, module: nn.Module) -> nn.Module | None:
        if factorize_linears and isinstance(module, nn.Linear):
            rows, cols = module.out_features, module.in_features
            rank = _rank_for(rows, cols, latent_features)
            if min(rows, cols) >= min_features and _saves_compute(rows, cols, rank):
                return FactorizedLinear(module, rank)
        if factorize_convs and isinstance(module, nn.Conv2d) and module.groups == 1:
            rows = module.out_channels
            cols = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            rank = _rank_for(module.out_channels, module.in_channels, latent_features)
            if min(module.out_channels, module.in_channels) >= min_features and _saves_compute(
                rows, cols, rank
            ):
                return FactorizedConv2d(module, rank)
        return None

    count = len(replace_modules(model, policy, optimizers))
    if count == 0:
        warn_no_effect(NAME, f"no Linear/Conv2d with both sides >= {min_features} to factorize")
    return count


class Factorize(Algorithm):
    name = NAME
    Config = FactorizeConfig
    runs_before = ("channels_last", "compile", "ema", "swa", "squeeze_excite", "blurpool")

    def match(self, event: Event, state: State) -> bool:
        return event == Event.INIT

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        import warnings

        c = self.config
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            count = apply_factorization(
                state.model,
                c.latent_features,
                c.min_features,
                c.factorize_convs,
                c.factorize_linears,
                state.optimizers,
            )
        if count == 0:
            raise no_effect_error(
                NAME,
                f"no Linear/Conv2d with both sides >= {c.min_features} where rank "
                f"{c.latent_features} saves compute",
            )
