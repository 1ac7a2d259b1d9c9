"""ProgressiveResizing: train on down-scaled images early, full size at the end.

The scale starts at `initial_scale`, stays there for the first `delay` of the run, grows
linearly, and is 1.0 for the last `finetune` of the run. Early batches cost about scale^2 of
the compute. Sizes are rounded to multiples of `size_increment`. It changes the math and needs
a model that accepts any input size; evaluation always runs at full size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from tessera.algorithms.common import (
    check_fields,
    check_range,
    inputs_and_targets,
    require_images,
    with_inputs,
)
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "progressive_resizing"
__all__ = ["ProgressiveResizing", "ProgressiveResizingConfig", "resize_batch", "resizing_scale"]


class ProgressiveResizingConfig(ComponentConfig):
    initial_scale: float = Field(
        0.5, gt=0.0, lt=1.0, description="image side at the start, a fraction of the full side"
    )
    delay: float = Field(
        0.4, ge=0.0, le=1.0, description="fraction of the run spent at initial_scale"
    )
    finetune: float = Field(
        0.2, ge=0.0, le=1.0, description="fraction of the run at the end spent at full size"
    )
    mode: Literal["resize", "crop"] = Field(
        "resize", description="'resize': bilinear down-scaling; 'crop': a centre crop"
    )
    size_increment: int = Field(4, ge=1, description="sizes are rounded to multiples of this")

    @model_validator(mode="after")
    def _fits_in_the_run(self) -> ProgressiveResizingConfig:
        if self.delay + self.finetune > 1.0:
            raise ValueError(
                f"delay ({self.delay}) + finetune ({self.finetune}) is more than the whole "
                "run; their sum must be at most 1"
            )
        return self


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
    check_fields(ProgressiveResizingConfig, NAME, mode=mode, size_increment=size_increment)
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
    Config = ProgressiveResizingConfig
    runs_before = ("randaugment", "augmix", "colout", "cutout", "mixup", "cutmix")

    def match(self, event: Event, state: State) -> bool:
        return event == Event.AFTER_DATALOADER

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        inputs, _ = inputs_and_targets(state.batch, NAME)
        c = self.config
        scale = resizing_scale(state.progress(), c.initial_scale, c.delay, c.finetune)
        if scale < 1.0:
            resized = resize_batch(inputs, scale, c.mode, c.size_increment)
            state.batch = with_inputs(state.batch, resized)
