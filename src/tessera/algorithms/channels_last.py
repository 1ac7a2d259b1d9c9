"""ChannelsLast: store conv weights and image batches as NHWC.

Tensor-core convolution kernels on GPUs (and oneDNN on CPUs) prefer the channels-last layout, so
converting once avoids a transpose inside every conv. The math is unchanged: only the memory
layout of the same numbers differs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from tessera.algorithms.common import no_effect_error, warn_no_effect
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "channels_last"
__all__ = ["ChannelsLast", "ChannelsLastConfig", "apply_channels_last", "to_channels_last"]


class ChannelsLastConfig(ComponentConfig):
    """No options: the layout change is all or nothing."""


def apply_channels_last(model: nn.Module) -> int:
    """Convert the model's 4-D parameters and buffers to channels-last in place.

    Parameters stay the same objects (optimizers need no change). Returns the number of
    converted 4-D tensors and warns if there were none.
    """
    count = sum(1 for p in model.parameters() if p.ndim == 4)
    model.to(memory_format=torch.channels_last)
    if count == 0:
        warn_no_effect(NAME, "the model has no 4-D (convolution) weights")
    return count


def to_channels_last(batch_inputs: torch.Tensor) -> torch.Tensor:
    """A 4-D (image) batch in channels-last layout; other tensors unchanged."""
    if batch_inputs.ndim == 4:
        return batch_inputs.contiguous(memory_format=torch.channels_last)
    return batch_inputs


class ChannelsLast(Algorithm):
    """Convert the model at INIT and each batch's image inputs after the dataloader."""

    name = NAME
    Config = ChannelsLastConfig

    def match(self, event: Event, state: State) -> bool:
        return event in (Event.INIT, Event.AFTER_DATALOADER)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.INIT:
            if not any(p.ndim == 4 for p in state.model.parameters()):
                raise no_effect_error(NAME, "the model has no 4-D (convolution) weights")
            apply_channels_last(state.model)
            return
        batch = state.batch
        if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
            state.batch = type(batch)([to_channels_last(batch[0]), *batch[1:]])
