"""UNetSkips (the modded-nanogpt speed runs): U-net connections between mirror blocks.

The outputs of the first n_layer // 2 blocks are kept, and each of the last n_layer // 2
blocks adds its mirror's output, times a learned weight starting at 1, to its input (the last
block gets the first block's output, and so on inwards), like the skips of a U-net. Later
blocks then see early features directly, which the speed runs found to cut steps at the cost
of one weight per skip. The weights train with the norms' parameter group. The config records
`unet_skips: true`. It changes the math.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from tessera.algorithms.gpt_options import GPTOptionMethod, gpt_needing, record
from tessera.algorithms.surgery import add_parameters
from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError

if TYPE_CHECKING:
    from tessera.core.state import State

NAME = "unet_skips"
__all__ = ["UNetSkips", "UNetSkipsConfig", "apply_unet_skips"]


class UNetSkipsConfig(ComponentConfig):
    """No options."""


def apply_unet_skips(
    model: nn.Module, optimizers: list[torch.optim.Optimizer] | None = None
) -> int:
    """Connect a GPT's mirror blocks; returns the number of skips."""
    gpt = gpt_needing(model, NAME, unet_skips=True)
    if gpt is None:
        return 0
    half = gpt.config.n_layer // 2
    if half == 0:
        raise ConfigError(f"algorithm '{NAME}': a model of one block has no mirror blocks")
    gpt.skip_weights = nn.Parameter(torch.ones(half, device=gpt.norm.weight.device))
    add_parameters(optimizers or [], gpt.norm.weight, [gpt.skip_weights])
    record(gpt, unet_skips=True)
    return half


class UNetSkips(GPTOptionMethod):
    name = NAME
    Config = UNetSkipsConfig
    option = "unet_skips"

    def change(self, state: State) -> None:
        apply_unet_skips(state.model, state.optimizers)
