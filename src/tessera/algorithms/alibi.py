"""ALiBi (Press et al., 2022): attention with linear biases instead of position embeddings.

Surgery on a Tessera GPT: the learned position embedding (or rotary tables) is removed and
every attention head adds `-slope * distance` to its scores, with per-head geometric slopes.
ALiBi models extrapolate to sequences longer than those trained on, so `max_seq_len` can be
raised at the same time (train short, evaluate long). The model's config is updated, so the
exported model records `position: alibi`. It changes the math; the removed embedding's
parameters leave the optimizer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field
from torch import nn

from tessera.algorithms.common import check_fields, warn_no_effect
from tessera.algorithms.surgery import swap_parameters
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError
from tessera.core.event import Event
from tessera.core.model import model_name

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "alibi"
__all__ = ["Alibi", "AlibiConfig", "apply_alibi"]


class AlibiConfig(ComponentConfig):
    max_seq_len: int | None = Field(
        None,
        ge=1,
        description="raise the model's maximum sequence length to this (ALiBi extrapolates); "
        "null keeps it",
    )


def find_gpt(model: nn.Module, method: str) -> Any:
    """The Tessera GPT inside `model` (itself or a submodule), or a ConfigError."""
    for module in model.modules():
        config = getattr(module, "config", None)
        blocks = getattr(module, "blocks", None)
        has_position = config is not None and hasattr(config, "position")
        if has_position and blocks is not None and all(hasattr(b, "attn") for b in blocks):
            return module
    raise ConfigError(
        f"algorithm '{method}' needs a transformer with attention (a Tessera GPT model); "
        f"{model_name(model)} has no attention blocks it can change"
    )


def apply_alibi(
    model: nn.Module,
    max_seq_len: int | None = None,
    optimizers: list[torch.optim.Optimizer] | None = None,
) -> int:
    """Switch a GPT to ALiBi positions in place; returns the number of attention layers."""
    check_fields(AlibiConfig, NAME, max_seq_len=max_seq_len)
    gpt = find_gpt(model, NAME)
    from tessera.models.gpt.layers import alibi_slopes

    config = gpt.config
    if config.position == "alibi" and max_seq_len in (None, config.max_seq_len):
        warn_no_effect(NAME, "the model already uses ALiBi")
        return 0
    if config.position == "learned":
        swap_parameters(optimizers or [], list(gpt.pos_embed.parameters()), [])
        del gpt.pos_embed
    for buffer in ("rope_cos", "rope_sin"):
        if buffer in gpt._buffers:
            del gpt._buffers[buffer]
    for block in gpt.blocks:
        block.attn.use_rope = False
    device = gpt.embed.weight.device
    gpt.register_buffer("alibi", alibi_slopes(config.n_head).to(device), persistent=False)
    updates: dict[str, Any] = {"position": "alibi"}
    if max_seq_len is not None:
        updates["max_seq_len"] = max_seq_len
    gpt.config = config.model_copy(update=updates)
    return len(gpt.blocks)


class Alibi(Algorithm):
    name = NAME
    Config = AlibiConfig
    runs_before = ("compile", "sequence_length_warmup")

    def match(self, event: Event, state: State) -> bool:
        return event == Event.INIT

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        gpt = find_gpt(state.model, NAME)
        max_seq_len = self.config.max_seq_len
        if gpt.config.position == "alibi" and max_seq_len is None:
            raise ConfigError(
                f"algorithm '{NAME}' has nothing to act on: the model already uses ALiBi "
                "positions (model.position: alibi); remove one of them"
            )
        apply_alibi(state.model, max_seq_len, state.optimizers)
