"""Batched image operations for RandAugment and AugMix, on tensors (no PIL, runs on GPU).

Each op takes images scaled to [0, 1] with shape (N, C, H, W) and a per-image magnitude in
[0, 1], and returns images in [0, 1]. `to_unit_range` / `from_unit_range` map normalised
inputs (any mean/std) into that range and back, per image, so the ops work after a Normalize.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Op = Callable[[torch.Tensor, torch.Tensor, "torch.Generator | None"], torch.Tensor]


def to_unit_range(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    scale = (high - low).clamp_min(1e-6)
    return (images - low) / scale, low, scale


def from_unit_range(images: torch.Tensor, low: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return images * scale + low


def _signs(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return (torch.randint(0, 2, (n,), generator=generator) * 2 - 1).to(device).float()


def _affine(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)


def _identity_theta(n: int, device: torch.device) -> torch.Tensor:
    return torch.eye(2, 3, device=device).repeat(n, 1, 1)


def identity(images: torch.Tensor, magnitude: torch.Tensor, generator=None) -> torch.Tensor:
    return images


def rotate(images: torch.Tensor, magnitude: torch.Tensor, generator=None) -> torch.Tensor:
    angle = magnitude * math.radians(30.0) * _signs(len(images), generator, images.device)
    theta = _identity_theta(len(images), images.device)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle), -torch.sin(angle)
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle), torch.cos(angle)
    return _affine(images, theta)


def shear_x(images: torch.Tensor, magnitude: torch.Tensor, generator=None) -> torch.Tensor:
    theta = _identity_theta(len(images), images.device)
    theta[:, 0, 1] = magnitude * 0.3 * _signs(len(images), generator, images.device)
    return _affine(images, theta)


def shear_y(images: torch.Tensor, magnitude: torch.Tensor, generator=None) -> torch.Tensor:
    theta = _identity_theta(len(images), images.device)
    theta[:, 1, 0] = magnitude * 0.3 * _signs(len(images), generator, images.device)
    return _affine(images, theta)


def translate_x(images: torch.Tensor, magnitude: torch.Tensor, generator=None) -> torch.Tensor:
    theta = _identity_theta(len(images), images.device)
    theta[:, 0, 2] = magnitude * 0.6 * _signs(len(images), generator, images.device)
    return _affine(images, theta)


def translate_y(images: torch.Tensor, magnitude: torch.Tensor, generator=None) -> torch.Tensor:
    theta = _identity_theta(len(images), images.device)
    theta[:, 1, 2] = magnitude * 0.6 * _signs(len(images), generator, images.device)
    return _affine(images, theta)


def _per_image(magnitude: torch.Tensor) -> torch.Tensor:
    return magnitude.view(-1, 1, 1, 1)


def brightness(images: torch.Tensor, magnitude: torch.Tensor, generator=None) -> torch.Tensor:
    factor = 1.0 + 0.9 * magnitude * _signs(len(images), generator, images.device)
    return (images * _per_image(factor)).clamp(0, 1)


def contrast(images: torch.Tensor, magnitude: torch.Tensor, generator=None) -> torch.Tensor:
    factor = _per_image(1.0 + 0.9 * magnitude * _signs(len(images), generator, images.device))
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (mean + (images - mean) * factor).clamp(0, 1)


def sharpness(images: torch.Tensor, magnitude: torch.Tensor, generator=None) -> torch.Tensor:
    channels = images.shape[1]
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], device=images.device)
    kernel = (kernel / kernel.sum()).to(images.dtype).expand(channels, 1, 3, 3)
    smooth = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=channels)
    factor = _per_image(1.0 + 0.9 * magnitude * _signs(len(images), generator, images.device))
    return (smooth + (images - smooth) * factor).clamp(0, 1)


def solarize(images: torch.Tensor, magnitude: torch.Tensor, generator=None) -> torch.Tensor:
    threshold = _per_image(1.0 - magnitude)
    return torch.where(images >= threshold, 1.0 - images, images)


def posterize(images: torch.Tensor, magnitude: torch.Tensor, generator=None) -> torch.Tensor:
    levels = _per_image(2.0 ** (8.0 - torch.round(magnitude * 4.0)))
    return torch.floor(images * (levels - 1) + 0.5) / (levels - 1)


def autocontrast(images: torch.Tensor, magnitude: torch.Tensor, generator=None) -> torch.Tensor:
    low = images.amin(dim=(2, 3), keepdim=True)
    high = images.amax(dim=(2, 3), keepdim=True)
    return ((images - low) / (high - low).clamp_min(1e-6)).clamp(0, 1)


OPS: dict[str, Op] = {
    "identity": identity,
    "rotate": rotate,
    "shear_x": shear_x,
    "shear_y": shear_y,
    "translate_x": translate_x,
    "translate_y": translate_y,
    "brightness": brightness,
    "contrast": contrast,
    "sharpness": sharpness,
    "solarize": solarize,
    "posterize": posterize,
    "autocontrast": autocontrast,
}

# AugMix leaves out ops that overlap with test-set corruptions (brightness, contrast, sharpness).
AUGMIX_OPS = (
    "autocontrast",
    "rotate",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "solarize",
    "posterize",
)


def apply_random_ops(
    images: torch.Tensor,
    op_names: tuple[str, ...] | list[str],
    magnitude: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply one randomly chosen op (independently per image) from `op_names`."""
    choice = torch.randint(0, len(op_names), (len(images),), generator=generator)
    out = images.clone()
    for index, name in enumerate(op_names):
        selected = (choice == index).nonzero(as_tuple=True)[0].to(images.device)
        if selected.numel():
            out[selected] = OPS[name](images[selected], magnitude[selected], generator)
    return out
