"""SlidingWindowAttention (Longformer, Mistral; the modded-nanogpt speed runs): each token
attends to the last `window` tokens only, through FlexAttention's block-sparse kernels.

Attention then costs O(T·window) instead of O(T²), which pays on long sequences. It needs a
Hopper GPU (compute capability 9.0+): FlexAttention compiles the window into a kernel that
skips masked blocks there, while anywhere else the window would be a dense mask that is
slower than full attention, so the method refuses other devices with an error that says so.
Generation with a KV cache applies the same window as an exact mask on any device. The config
records `attention_window`. It changes the math (a token sees less context).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field
from torch import nn

from tessera.algorithms.common import check_fields
from tessera.algorithms.gpt_options import GPTOptionMethod, gpt_needing, record
from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError

if TYPE_CHECKING:
    from tessera.core.state import State

NAME = "sliding_window_attention"
__all__ = ["SlidingWindowAttention", "SlidingWindowAttentionConfig", "apply_sliding_window"]


class SlidingWindowAttentionConfig(ComponentConfig):
    window: int = Field(128, ge=1, description="tokens a token sees: itself and window - 1 before")


def apply_sliding_window(
    model: nn.Module, window: int = 128, device: torch.device | str | None = None
) -> int:
    """Restrict a GPT's attention to `window` tokens; returns the number of layers. Refuses
    (UserError) unless `device` (default: where the model is) is a Hopper GPU."""
    from tessera.models.gpt.flex import check_flex_device

    check_fields(SlidingWindowAttentionConfig, NAME, window=window)
    gpt = gpt_needing(model, NAME, attention_window=window)
    if gpt is None:
        return 0
    check_flex_device(device or gpt.embed.weight.device, f"algorithm '{NAME}'")
    config = gpt.config
    if config.position == "alibi" or config.dropout > 0:
        raise ConfigError(
            f"algorithm '{NAME}' needs a model without ALiBi and with dropout 0 (FlexAttention "
            f"has no attention dropout); this one has position {config.position!r}, dropout "
            f"{config.dropout}"
        )
    for block in gpt.blocks:
        block.attn.window = window
    record(gpt, attention_window=window)
    return len(gpt.blocks)


class SlidingWindowAttention(GPTOptionMethod):
    name = NAME
    Config = SlidingWindowAttentionConfig
    option = "attention_window"
    runs_after = ("alibi",)

    def change(self, state: State) -> None:
        apply_sliding_window(state.model, self.config.window, state.device)
