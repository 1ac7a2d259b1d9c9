"""QKNorm (Henry et al., 2020; the modded-nanogpt speed runs): RMS-normalise queries and keys.

Every attention head's query and key vectors are divided by their root mean square before
the rotary embedding and the dot product, so attention logits stay bounded however large the
projections grow: training tolerates higher learning rates without logit blow-ups. The norm
has no weights (the projections learn the scale), so no parameter changes and the optimizer
is untouched; the model's config records `qk_norm: true`. It changes the math.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from tessera.algorithms.gpt_options import GPTOptionMethod, gpt_needing, record
from tessera.core.component import ComponentConfig

if TYPE_CHECKING:
    from tessera.core.state import State

NAME = "qk_norm"
__all__ = ["QKNorm", "QKNormConfig", "apply_qk_norm"]


class QKNormConfig(ComponentConfig):
    """No options: the norm is parameter-free."""


def apply_qk_norm(model: nn.Module) -> int:
    """Normalise queries and keys in every attention layer of a GPT; returns how many."""
    gpt = gpt_needing(model, NAME, qk_norm=True)
    if gpt is None:
        return 0
    for block in gpt.blocks:
        block.attn.qk_norm = True
    record(gpt, qk_norm=True)
    return len(gpt.blocks)


class QKNorm(GPTOptionMethod):
    name = NAME
    Config = QKNormConfig
    option = "qk_norm"

    def change(self, state: State) -> None:
        apply_qk_norm(state.model)
