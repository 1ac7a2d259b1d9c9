"""ZeroInitProjections (the modded-nanogpt speed runs; cf. Fixup, ReZero): start every
residual branch's output projection at zero.

Each block's attention output projection and MLP down projection (and an untied output
head) are set to zero before the first step, so every block starts as the identity and the
network starts as its embeddings; the branches then grow from there. Gradients still reach
every weight after the first step (the zeroed matrices get them at once). Tied heads are left
alone (zeroing one would zero the embedding). The config records
`zero_init_projections: true`. It changes the math (the initialisation only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from tessera.algorithms.gpt_options import GPTOptionMethod, gpt_needing, record
from tessera.core.component import ComponentConfig

if TYPE_CHECKING:
    from tessera.core.state import State

NAME = "zero_init_projections"
__all__ = ["ZeroInitProjections", "ZeroInitProjectionsConfig", "apply_zero_init_projections"]


class ZeroInitProjectionsConfig(ComponentConfig):
    """No options."""


@torch.no_grad()
def apply_zero_init_projections(model: nn.Module) -> int:
    """Zero a GPT's output projections (and untied head); returns how many weights."""
    from tessera.models.gpt.model import ZERO_INIT

    gpt = gpt_needing(model, NAME, zero_init_projections=True)
    if gpt is None:
        return 0
    zeroed = 0
    embedding = gpt.embed.weight
    for name, parameter in gpt.named_parameters():
        if name.endswith(ZERO_INIT) and parameter is not embedding:
            parameter.zero_()
            zeroed += 1
    record(gpt, zero_init_projections=True)
    return zeroed


class ZeroInitProjections(GPTOptionMethod):
    name = NAME
    Config = ZeroInitProjectionsConfig
    option = "zero_init_projections"

    def change(self, state: State) -> None:
        apply_zero_init_projections(state.model)
