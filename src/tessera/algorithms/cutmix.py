"""CutMix (Yun et al., 2019): paste a random box from another sample into each image.

The box covers a fraction `1 - lam` of the image, with lam ~ Beta(alpha, alpha); the loss is
`lam * loss(y) + (1 - lam) * loss(y[perm])` with lam corrected to the box actually pasted
(after clipping at the border). It changes the math (a regulariser).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field

from tessera.algorithms.common import check_fields, require_images
from tessera.algorithms.mixup import MixingAlgorithm, sample_mixing_weight
from tessera.core.component import ComponentConfig

NAME = "cutmix"
__all__ = ["CutMix", "CutMixConfig", "cutmix_batch"]


class CutMixConfig(ComponentConfig):
    alpha: float = Field(
        1.0, gt=0.0, description="the pasted box covers 1 - lam, lam ~ Beta(alpha, alpha)"
    )


def random_box(
    height: int, width: int, area_fraction: float, generator: torch.Generator | None = None
) -> tuple[int, int, int, int]:
    """A box (top, bottom, left, right) of about `area_fraction` of the image, clipped."""
    cut_h = int(height * math.sqrt(area_fraction))
    cut_w = int(width * math.sqrt(area_fraction))
    center_y = int(torch.randint(0, height, (1,), generator=generator))
    center_x = int(torch.randint(0, width, (1,), generator=generator))
    top, bottom = max(center_y - cut_h // 2, 0), min(center_y + cut_h // 2, height)
    left, right = max(center_x - cut_w // 2, 0), min(center_x + cut_w // 2, width)
    return top, bottom, left, right


def cutmix_batch(
    inputs: torch.Tensor,
    targets: Any,
    alpha: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, Any, Any, float]:
    """Returns (inputs with pasted boxes, targets, permuted targets, lam = kept area fraction)."""
    check_fields(CutMixConfig, NAME, alpha=alpha)
    require_images(inputs, NAME)
    lam = sample_mixing_weight(alpha, generator)
    permutation = torch.randperm(inputs.shape[0], generator=generator).to(inputs.device)
    height, width = inputs.shape[-2:]
    top, bottom, left, right = random_box(height, width, 1.0 - lam, generator)
    mixed = inputs.clone()
    mixed[..., top:bottom, left:right] = inputs[permutation][..., top:bottom, left:right]
    kept = 1.0 - (bottom - top) * (right - left) / (height * width)
    return mixed, targets, targets[permutation], kept


class CutMix(MixingAlgorithm):
    name = NAME
    Config = CutMixConfig
    conflicts = ("mixup",)
    runs_after = ("progressive_resizing", "randaugment", "augmix", "colout", "cutout")

    def mix(self, inputs: torch.Tensor, targets: Any) -> tuple[torch.Tensor, Any, float]:
        mixed, _, permuted, lam = cutmix_batch(inputs, targets, self.config.alpha)
        return mixed, permuted, lam
