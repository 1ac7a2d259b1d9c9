"""SqueezeExcite (Hu et al., 2018): re-weight each conv's output channels by a learned gate.

After every Conv2d with at least `min_channels` output channels, a block pools the feature map
to one value per channel, passes it through a small bottleneck MLP and scales the channels by
the sigmoid of the result. It changes the math and adds parameters (added to the optimizer);
it buys accuracy per step at a small cost per step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field, field_validator
from torch import nn

from tessera.algorithms.common import check_fields, no_effect_error, warn_no_effect
from tessera.algorithms.surgery import replace_modules
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "squeeze_excite"
__all__ = ["SqueezeExcite", "SqueezeExciteConfig", "apply_squeeze_excite"]


class SqueezeExciteConfig(ComponentConfig):
    latent_channels: float = Field(
        0.125,
        gt=0.0,
        description="bottleneck width: below 1 a fraction of the conv's channels, else a "
        "whole number of channels",
    )
    min_channels: int = Field(
        64, ge=1, description="gate only convs with at least this many output channels"
    )

    @field_validator("latent_channels")
    @classmethod
    def _whole_count(cls, latent: float) -> float:
        if latent >= 1 and latent != int(latent):
            raise ValueError("a channel count of 1 or more must be whole (below 1: a fraction)")
        return latent


class SqueezeExcite2d(nn.Module):
    def __init__(self, channels: int, latent_channels: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, latent_channels, 1)
        self.expand = nn.Conv2d(latent_channels, channels, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.mean(dim=(2, 3), keepdim=True)
        gate = torch.sigmoid(self.expand(torch.relu(self.reduce(pooled))))
        return features * gate


class SqueezeExciteConv2d(nn.Module):
    """A conv followed by a squeeze-excite gate on its output."""

    def __init__(self, conv: nn.Conv2d, latent_channels: int) -> None:
        super().__init__()
        self.conv = conv
        self.excite = SqueezeExcite2d(conv.out_channels, latent_channels).to(conv.weight.device)
        self.train(conv.training)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.excite(self.conv(inputs))


def apply_squeeze_excite(
    model: nn.Module,
    latent_channels: float = 0.125,
    min_channels: int = 64,
    optimizers: torch.optim.Optimizer | list[torch.optim.Optimizer] | None = None,
) -> int:
    """Add squeeze-excite after convs with >= `min_channels` outputs; new params join optimizers.

    `latent_channels` below 1 is a fraction of the conv's channels, otherwise a count.
    """
    check_fields(
        SqueezeExciteConfig, NAME, latent_channels=latent_channels, min_channels=min_channels
    )

    def policy(_: str, module: nn.Module) -> nn.Module | None:
        if isinstance(module, nn.Conv2d) and module.out_channels >= min_channels:
            channels = module.out_channels
            latent = latent_channels if latent_channels >= 1 else channels * latent_channels
            return SqueezeExciteConv2d(module, max(1, int(latent)))
        return None

    count = len(replace_modules(model, policy, optimizers))
    if count == 0:
        warn_no_effect(NAME, f"the model has no Conv2d with >= {min_channels} output channels")
    return count


class SqueezeExcite(Algorithm):
    name = NAME
    Config = SqueezeExciteConfig
    runs_before = ("channels_last", "compile", "ema", "swa")

    def match(self, event: Event, state: State) -> bool:
        return event == Event.INIT

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        c = self.config
        if not any(
            isinstance(m, nn.Conv2d) and m.out_channels >= c.min_channels
            for m in state.model.modules()
        ):
            raise no_effect_error(
                NAME, f"the model has no Conv2d with >= {c.min_channels} output channels"
            )
        apply_squeeze_excite(state.model, c.latent_channels, c.min_channels, state.optimizers)
