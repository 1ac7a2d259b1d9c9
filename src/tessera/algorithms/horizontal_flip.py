"""HorizontalFlip: mirror training images left-right, at random or alternating by epoch.

`random` flips each image with probability 1/2, drawn afresh each batch. `alternating` is the
derandomised flip of the CIFAR-10 speed runs (airbench): each image is flipped in every other
epoch, starting flipped or not by a fixed coin of its own, so every pair of consecutive
epochs shows each image exactly once each way round (random flips leave a quarter of the
images unmirrored over two epochs). The coin is a hash of the image's pixels and the run's seed,
so it needs no sample index and is the same on every device and batch size; the flip is decided
before any other augmentation changes the pixels (it runs first). It changes the math (an
augmentation) and costs one `where` per batch. For mirror-symmetric classes only.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field

from tessera.algorithms.common import check_fields, inputs_and_targets, require_images, with_inputs
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "horizontal_flip"
__all__ = ["HorizontalFlip", "HorizontalFlipConfig", "flip_batch", "image_coins"]

_MIX = 0x9E3779B97F4A7C15 - 2**64  # Fibonacci hashing constant, as a signed 64-bit integer
_LEVELS = 1024  # pixel values are hashed at this resolution per unit


class HorizontalFlipConfig(ComponentConfig):
    mode: Literal["alternating", "random"] = Field(
        "alternating", description="'alternating': each image every other epoch; 'random': p=1/2"
    )


def image_coins(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A fixed pseudo-random bit (bool) per image, from its pixels and `seed` alone.

    Pixels are quantised and hashed with integer arithmetic (exact and order-free), so the
    same image gets the same bit in any batch, on any device."""
    require_images(images, NAME)
    flat = torch.round(images.detach().flatten(1).float() * _LEVELS).to(torch.int64)
    key = (flat * _pixel_weights(seed, flat.shape[1], flat.device)).sum(dim=1) * _MIX
    return ((key >> 40) & 1).bool()


@functools.lru_cache(maxsize=8)
def _pixel_weights(seed: int, pixels: int, device: torch.device) -> torch.Tensor:
    """The hash's per-pixel multipliers, drawn once per (seed, size, device): no host-to-device
    copy per batch."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, 2**31 - 1, (pixels,), generator=generator).to(device)


def flip_batch(
    inputs: torch.Tensor,
    mode: str = "alternating",
    epoch: int = 0,
    seed: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The batch with some images mirrored (the last axis reversed), chosen by `mode`."""
    check_fields(HorizontalFlipConfig, NAME, mode=mode)
    require_images(inputs, NAME)
    if mode == "alternating":
        flip = image_coins(inputs, seed) ^ bool(epoch % 2)
    else:
        flip = torch.rand(len(inputs), generator=generator).to(inputs.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), inputs.flip(-1), inputs)


class HorizontalFlip(Algorithm):
    name = NAME
    Config = HorizontalFlipConfig
    runs_before = (
        "progressive_resizing",
        "randaugment",
        "augmix",
        "colout",
        "cutout",
        "mixup",
        "cutmix",
        "channels_last",
    )

    def match(self, event: Event, state: State) -> bool:
        return event == Event.AFTER_DATALOADER

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        inputs, _ = inputs_and_targets(state.batch, NAME)
        flipped = flip_batch(inputs, self.config.mode, state.timestamp.epoch, state.seed)
        state.batch = with_inputs(state.batch, flipped)
