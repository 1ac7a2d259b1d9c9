"""ColOut: drop a random subset of rows and columns from every image of a batch.

The same rows and columns are dropped across the batch, so the result is a smaller dense batch:
the forward and backward get cheaper (about (1 - p_row)(1 - p_col) of the pixels) and the
images are slightly distorted, a cheap augmentation. It changes the math and needs a model
that accepts any input size (global pooling before the classifier).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field, model_validator

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

NAME = "colout"
__all__ = ["ColOut", "ColOutConfig", "colout_batch"]


class ColOutConfig(ComponentConfig):
    p_row: float = Field(0.15, ge=0.0, lt=1.0, description="fraction of rows dropped")
    p_col: float = Field(0.15, ge=0.0, lt=1.0, description="fraction of columns dropped")

    @model_validator(mode="after")
    def _drops_something(self) -> ColOutConfig:
        if self.p_row == 0 and self.p_col == 0:
            raise ValueError(
                "p_row and p_col are both 0, so nothing would be dropped; set one above 0"
            )
        return self


def colout_batch(
    images: torch.Tensor,
    p_row: float = 0.15,
    p_col: float = 0.15,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Keep `round((1 - p) * size)` randomly chosen rows and columns, in their order."""
    check_fields(ColOutConfig, NAME, p_row=p_row, p_col=p_col)
    require_images(images, NAME)
    height, width = images.shape[-2:]
    keep_rows = max(1, round((1.0 - p_row) * height))
    keep_cols = max(1, round((1.0 - p_col) * width))
    rows = torch.randperm(height, generator=generator)[:keep_rows].sort().values
    cols = torch.randperm(width, generator=generator)[:keep_cols].sort().values
    return images[:, :, rows.to(images.device)][:, :, :, cols.to(images.device)]


class ColOut(Algorithm):
    name = NAME
    Config = ColOutConfig
    runs_after = ("progressive_resizing", "randaugment", "augmix")

    def match(self, event: Event, state: State) -> bool:
        return event == Event.AFTER_DATALOADER

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        inputs, _ = inputs_and_targets(state.batch, NAME)
        dropped = colout_batch(inputs, self.config.p_row, self.config.p_col)
        state.batch = with_inputs(state.batch, dropped)
