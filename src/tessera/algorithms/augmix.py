"""AugMix (Hendrycks et al., 2020): blend several short augmentation chains with the original.

`width` chains of 1..3 random ops (or `depth` ops) are mixed with Dirichlet(alpha) weights, and
the mix is blended with the clean image with a Beta(alpha, alpha) weight. This is the data
side of AugMix; the Jensen-Shannon consistency loss of the paper is not included (it triples the
forward cost). It changes the math (data augmentation) and aims at robustness, not speed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field, field_validator

from tessera.algorithms.common import (
    check_fields,
    inputs_and_targets,
    require_images,
    with_inputs,
)
from tessera.algorithms.image_ops import (
    AUGMIX_OPS,
    apply_random_ops,
    from_unit_range,
    to_unit_range,
)
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "augmix"
__all__ = ["AugMix", "AugMixConfig", "augmix_batch"]


class AugMixConfig(ComponentConfig):
    severity: float = Field(3, ge=0, le=10, description="strength of every op, 0 (none) to 10")
    width: int = Field(3, ge=1, le=10, description="augmentation chains mixed per image")
    depth: int = Field(
        -1, ge=-1, le=10, description="ops per chain; -1 draws 1 to 3 ops for each chain"
    )
    alpha: float = Field(
        1.0, gt=0, description="Dirichlet weights of the chains and Beta blend with the original"
    )

    @field_validator("depth")
    @classmethod
    def _depth_not_zero(cls, depth: int) -> int:
        if depth == 0:
            raise ValueError("a chain needs at least one op; use 1 to 10, or -1 for 1 to 3 random")
        return depth


def augmix_batch(
    images: torch.Tensor,
    severity: float = 3,
    width: int = 3,
    depth: int = -1,
    alpha: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """AugMix every image of a batch; depth -1 draws 1..3 ops per chain."""
    check_fields(AugMixConfig, NAME, severity=severity, width=width, depth=depth, alpha=alpha)
    require_images(images, NAME)
    unit, low, scale = to_unit_range(images)
    n = len(images)
    concentration = torch.full((n, width), float(alpha))
    weights = torch._sample_dirichlet(concentration, generator=generator).to(images)
    gammas = torch._standard_gamma(torch.full((n, 2), float(alpha)), generator=generator)
    blend = (gammas[:, 0] / gammas.sum(dim=1)).to(images).view(n, 1, 1, 1)
    magnitude = torch.full((n,), severity / 10.0, device=images.device)
    mixed = torch.zeros_like(unit)
    for chain in range(width):
        chain_depth = depth if depth > 0 else int(torch.randint(1, 4, (1,), generator=generator))
        augmented = unit
        for _ in range(chain_depth):
            augmented = apply_random_ops(augmented, AUGMIX_OPS, magnitude, generator)
        mixed = mixed + weights[:, chain].view(n, 1, 1, 1) * augmented
    out = blend * unit + (1.0 - blend) * mixed
    return from_unit_range(out, low, scale)


class AugMix(Algorithm):
    name = NAME
    Config = AugMixConfig
    conflicts = ("randaugment",)
    runs_after = ("progressive_resizing",)

    def match(self, event: Event, state: State) -> bool:
        return event == Event.AFTER_DATALOADER

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        inputs, _ = inputs_and_targets(state.batch, NAME)
        c = self.config
        augmented = augmix_batch(inputs, c.severity, c.width, c.depth, c.alpha)
        state.batch = with_inputs(state.batch, augmented)
