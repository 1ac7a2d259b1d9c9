"""RandAugment (Cubuk et al., 2020): apply `depth` random image ops of one strength per image.

Ops and strengths are sampled independently per image, on the batch tensor (so it runs on the
GPU, after the dataloader). It changes the math (data augmentation); it pays off on longer runs.
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
from tessera.algorithms.image_ops import OPS, apply_random_ops, from_unit_range, to_unit_range
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "randaugment"
__all__ = ["RandAugment", "RandAugmentConfig", "randaugment_batch"]


class RandAugmentConfig(ComponentConfig):
    depth: int = Field(2, ge=1, le=8, description="random ops applied to each image in turn")
    severity: float = Field(9, ge=0, le=10, description="strength of every op, 0 (none) to 10")


def randaugment_batch(
    images: torch.Tensor,
    depth: int = 2,
    severity: float = 9,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply `depth` random ops at strength `severity` (0..10) to each image of a batch."""
    check_fields(RandAugmentConfig, NAME, depth=depth, severity=severity)
    require_images(images, NAME)
    unit, low, scale = to_unit_range(images)
    magnitude = torch.full((len(images),), severity / 10.0, device=images.device)
    names = tuple(OPS)
    for _ in range(depth):
        unit = apply_random_ops(unit, names, magnitude, generator)
    return from_unit_range(unit, low, scale)


class RandAugment(Algorithm):
    name = NAME
    Config = RandAugmentConfig
    conflicts = ("augmix",)
    runs_after = ("progressive_resizing",)

    def match(self, event: Event, state: State) -> bool:
        return event == Event.AFTER_DATALOADER

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        inputs, _ = inputs_and_targets(state.batch, NAME)
        augmented = randaugment_batch(inputs, self.config.depth, self.config.severity)
        state.batch = with_inputs(state.batch, augmented)
