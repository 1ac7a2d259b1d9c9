"""ProgressiveResizing: train on down-scaled images early, full size at the end.

The scale starts at `initial_scale`, stays there for the first `delay` of the run, grows
linearly, and is 1.0 for the last `finetune` of the run. Early batches cost about scale^2 of
the compute. Sizes are rounded to multiples of `size_increment`. It changes the math and needs
a model that accepts any input size; evaluation always runs at full size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from tessera.algorithms.common import (
    check_choice,
    check_range,
    inputs_and_targets,
    require_images,
    with_inputs,
)
from tessera.core.algorithm import Algorithm
from tessera.core.errors import ConfigError
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "progressive_resizing"


def resizing_scale(progress: float, initial_scale: float, delay: float, finetune: float) -> float:
    """The image scale at a fraction `progress` of the run."""
    if progress < delay:
        return initial_scale
    ramp_end = 1.0 - finetune
    if progress >= ramp_end or ramp_end <= delay:
        return 1.0
    fraction = (progress - delay) / (ramp_end - delay)
    return initial_scale + (1.0 - initial_scale) * fraction


def resize_batch(
    images: torch.Tensor, scale: float, mode: str = "resize", size_increment: int = 4
) -> torch.Tensor:
    """Down-scale images by `scale` (bilinear resize, or a centre crop with mode='crop')."""
    check_range(NAME, "scale", scale, 0.0, 1.0, low_inclusive=False)
    check_choice(NAME, "mode", mode, ("resize", "crop"))
    require_images(images, NAME)
    height, width = images.shape[-2:]
    new_h = max(size_increment, round(height * scale / size_increment) * size_increment)
    new_w = max(size_increment, round(width * scale / size_increment) * size_increment)
    if (new_h, new_w) >= (height, width):
        return images
    if mode == "crop":
        top, left = (height - new_h) // 2, (width - new_w) // 2
        return images[..., top : top + new_h, left : left + new_w]
    return F.interpolate(images, size=(new_h, new_w), mode="bilinear", antialias=True)


class ProgressiveResizing(Algorithm):
    name = NAME
    runs_before = ("randaugment", "augmix", "colout", "cutout", "mixup", "cutmix")

    def __init__(
        self,
        initial_scale: float = 0.5,
        delay: float = 0.4,
        finetune: float = 0.2,
        mode: str = "resize",
        size_increment: int = 4,
    ) -> None:
        check_range(NAME, "initial_scale", initial_scale, 0.0, 1.0, low_inclusive=False)
        check_range(NAME, "delay", delay, 0.0, 1.0)
        check_range(NAME, "finetune", finetune, 0.0, 1.0)
        check_choice(NAME, "mode", mode, ("resize", "crop"))
        check_range(NAME, "size_increment", size_increment, 1, integer=True)
        if delay + finetune > 1.0:
            raise ConfigError(
                f"algorithm '{NAME}': delay ({delay}) + finetune ({finetune}) is more than the "
                "whole run; their sum must be at most 1"
            )
        self.initial_scale, self.delay, self.finetune = initial_scale, delay, finetune
        self.mode, self.size_increment = mode, size_increment

    def match(self, event: Event, state: State) -> bool:
        return event == Event.AFTER_DATALOADER

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        inputs, _ = inputs_and_targets(state.batch, NAME)
        scale = resizing_scale(state.progress(), self.initial_scale, self.delay, self.finetune)
        if scale < 1.0:
            resized = resize_batch(inputs, scale, self.mode, self.size_increment)
            state.batch = with_inputs(state.batch, resized)
