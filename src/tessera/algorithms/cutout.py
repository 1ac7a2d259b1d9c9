"""CutOut (DeVries & Taylor, 2017): zero a random square in every image.

Each image gets `num_holes` squares of side `length` (a fraction of the shorter side) set to
zero, at independent random centres (squares may be clipped at the border). It changes the
math (a regulariser) and costs almost nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field

from tessera.algorithms.common import (
    check_fields,
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

NAME = "cutout"
__all__ = ["CutOut", "CutOutConfig", "cutout_batch", "cutout_mask"]


class CutOutConfig(ComponentConfig):
    length: float = Field(
        0.5, gt=0.0, le=1.0, description="side of each square, a fraction of the shorter side"
    )
    num_holes: int = Field(1, ge=1, description="squares zeroed per image")


def cutout_mask(
    batch_size: int,
    height: int,
    width: int,
    length: float,
    num_holes: int = 1,
    device: torch.device | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A (N, 1, H, W) mask, 0 inside each image's holes and 1 elsewhere."""
    side = max(1, round(length * min(height, width)))
    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    mask = torch.ones(batch_size, height, width, device=device)
    for _ in range(num_holes):
        center_y = torch.randint(0, height, (batch_size, 1, 1), generator=generator).to(device)
        center_x = torch.randint(0, width, (batch_size, 1, 1), generator=generator).to(device)
        inside = ((rows - center_y).abs() <= side // 2) & ((cols - center_x).abs() <= side // 2)
        mask = mask.masked_fill(inside, 0.0)
    return mask.unsqueeze(1)


def cutout_batch(
    inputs: torch.Tensor,
    length: float = 0.5,
    num_holes: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero `num_holes` squares of side `length * min(H, W)` in each image."""
    check_fields(CutOutConfig, NAME, length=length, num_holes=num_holes)
    require_images(inputs, NAME)
    n, _, height, width = inputs.shape
    mask = cutout_mask(n, height, width, length, num_holes, inputs.device, generator)
    return inputs * mask.to(inputs.dtype)


class CutOut(Algorithm):
    name = NAME
    Config = CutOutConfig
    runs_after = ("progressive_resizing", "randaugment", "augmix", "colout")

    def match(self, event: Event, state: State) -> bool:
        return event == Event.AFTER_DATALOADER

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        inputs, _ = inputs_and_targets(state.batch, NAME)
        holed = cutout_batch(inputs, self.config.length, self.config.num_holes)
        state.batch = with_inputs(state.batch, holed)
