"""GatedLinearUnits (Shazeer, 2020): replace a GPT's GELU MLP by a gated (SwiGLU) MLP.

Each block's `down(gelu(up(x)))` becomes `down(silu(gate(x)) * up(x))`. The hidden width is
scaled by `hidden_ratio` (2/3 by default) so the parameter count stays about the same. New
weights are drawn with the standard deviations of the weights they replace (biases zero) and
swapped into the optimizer; the model's config is updated (`mlp: swiglu`, `d_ff`), so the
exported model loads as a SwiGLU model. It changes the math (a different network).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field
from torch import nn

from tessera.algorithms.alibi import find_gpt
from tessera.algorithms.common import check_fields, warn_no_effect
from tessera.algorithms.surgery import swap_parameters
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "gated_linear_units"
__all__ = ["GatedLinearUnits", "GatedLinearUnitsConfig", "apply_gated_linear_units"]


class GatedLinearUnitsConfig(ComponentConfig):
    hidden_ratio: float = Field(
        2.0 / 3.0,
        gt=0.0,
        description="new hidden width over the old one (2/3 keeps the parameter count)",
    )
    multiple_of: int = Field(8, ge=1, description="round the hidden width to a multiple of this")


@torch.no_grad()
def apply_gated_linear_units(
    model: nn.Module,
    hidden_ratio: float = 2.0 / 3.0,
    multiple_of: int = 8,
    optimizers: list[torch.optim.Optimizer] | None = None,
) -> int:
    """Swap every GELU MLP of a GPT for a SwiGLU one; returns the number of blocks changed."""
    check_fields(GatedLinearUnitsConfig, NAME, hidden_ratio=hidden_ratio, multiple_of=multiple_of)
    gpt = find_gpt(model, NAME)
    from tessera.models.gpt.layers import MLP

    config = gpt.config
    if config.mlp == "swiglu":
        warn_no_effect(NAME, "the model's MLPs are already gated (SwiGLU)")
        return 0
    hidden = max(multiple_of, round(config.hidden_dim * hidden_ratio / multiple_of) * multiple_of)
    new_config = config.model_copy(update={"mlp": "swiglu", "d_ff": hidden})
    for block in gpt.blocks:
        old = block.mlp
        new = MLP(new_config).to(old.up.weight.device, old.up.weight.dtype)
        new.up.weight.normal_(0.0, float(old.up.weight.std()))
        new.down.weight.normal_(0.0, float(old.down.weight.std()))
        for linear in (new.up, new.down):
            if linear.bias is not None:
                linear.bias.zero_()
        new.train(old.training)
        swap_parameters(optimizers or [], list(old.parameters()), list(new.parameters()))
        block.mlp = new
    gpt.config = new_config
    return len(gpt.blocks)


class GatedLinearUnits(Algorithm):
    name = NAME
    Config = GatedLinearUnitsConfig
    runs_before = ("compile", "low_precision_norm")

    def match(self, event: Event, state: State) -> bool:
        return event == Event.INIT

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if find_gpt(state.model, NAME).config.mlp == "swiglu":
            raise ConfigError(
                f"algorithm '{NAME}' has nothing to act on: the model's MLPs are already gated "
                "(model.mlp: swiglu); remove one of them"
            )
        c = self.config
        apply_gated_linear_units(state.model, c.hidden_ratio, c.multiple_of, state.optimizers)
