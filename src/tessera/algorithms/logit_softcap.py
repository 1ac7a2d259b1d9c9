"""LogitSoftcap (Gemma 2; the modded-nanogpt speed runs): squash output logits into (-c, c).

The language-model head's logits z become c·tanh(z / c): unchanged while small, smoothly
bounded when large, so the model cannot grow over-confident logits early, which let the
speed runs train at higher learning rates. No parameters change; the config records
`logit_softcap: c` (export keeps it; Hugging Face's GPT-2 and Llama have no such option, so
a Hugging Face export refuses it). It changes the math.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field
from torch import nn

from tessera.algorithms.common import check_fields
from tessera.algorithms.gpt_options import GPTOptionMethod, gpt_needing, record
from tessera.core.component import ComponentConfig

if TYPE_CHECKING:
    from tessera.core.state import State

NAME = "logit_softcap"
__all__ = ["LogitSoftcap", "LogitSoftcapConfig", "apply_logit_softcap"]


class LogitSoftcapConfig(ComponentConfig):
    cap: float = Field(15.0, gt=0, allow_inf_nan=False, description="the bound c of c·tanh(z/c)")


def apply_logit_softcap(model: nn.Module, cap: float = 15.0) -> bool:
    """Cap a GPT's logits at `cap`; returns whether anything changed."""
    check_fields(LogitSoftcapConfig, NAME, cap=cap)
    gpt = gpt_needing(model, NAME, logit_softcap=cap)
    if gpt is None:
        return False
    record(gpt, logit_softcap=float(cap))
    return True


class LogitSoftcap(GPTOptionMethod):
    name = NAME
    Config = LogitSoftcapConfig
    option = "logit_softcap"

    def change(self, state: State) -> None:
        apply_logit_softcap(state.model, self.config.cap)
