"""AugMix (Hendrycks et al., 2020): blend several short augmentation chains with the original.

`width` chains of 1..3 random ops (or `depth` ops) are mixed with Dirichlet(alpha) weights, and
the mix is blended with the clean image with a Beta(alpha, alpha) weight. This is the data
side of AugMix; the Jensen-Shannon consistency loss of the paper is not included (it triples the
forward cost). It changes the math (data augmentation) and aims at robustness, not speed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from tessera.algorithms.common import (
    check_range,
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
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "augmix"


def augmix_batch(
    images: torch.Tensor,
    severity: int = 3,
    width: int = 3,
    depth: int = -1,
    alpha: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """AugMix every image of a batch; depth -1 draws 1..3 ops per chain."""
    _check(severity, width, depth, alpha)
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


def _check(severity: int, width: int, depth: int, alpha: float) -> None:
    check_range(NAME, "severity", severity, 0, 10)
    check_range(NAME, "width", width, 1, 10, integer=True)
    check_range(NAME, "depth", depth, -1, 10, integer=True)
    check_range(NAME, "alpha", alpha, 0.0, low_inclusive=False)


class AugMix(Algorithm):
    name = NAME
    conflicts = ("randaugment",)
    runs_after = ("progressive_resizing",)

    def __init__(self, severity: int = 3, width: int = 3, depth: int = -1, alpha: float = 1.0):
        _check(severity, width, depth, alpha)
        self.severity, self.width, self.depth, self.alpha = severity, width, depth, alpha

    def match(self, event: Event, state: State) -> bool:
        return event == Event.AFTER_DATALOADER

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        inputs, _ = inputs_and_targets(state.batch, NAME)
        augmented = augmix_batch(inputs, self.severity, self.width, self.depth, self.alpha)
        state.batch = with_inputs(state.batch, augmented)
