"""PatchWhitening: initialise the first convolution as a whitening transform of image patches.

From the CIFAR-10 speed runs (airbench): the first layer's filters are set, before training, to
the eigenvectors of the covariance of the training images' k x k patches, each divided by the
square root of its eigenvalue (plus `eps`). On training patches that layer's outputs are then
decorrelated with unit variance, so the rest of the network starts from whitened inputs instead
of spending its first steps learning that. With more output channels than patch dimensions the
remaining filters are the negated leading ones (a following ReLU then keeps both signs of the
leading directions); with fewer, the leading directions are kept. `freeze` keeps the filters
fixed for the whole run (as airbench does); a bias of the layer is set so its outputs are zero
mean. It changes the math (the initialisation, and with `freeze` which weights train).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from tessera.algorithms.common import check_fields, inputs_and_targets, require_images
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

log = logging.getLogger(__name__)

NAME = "patch_whitening"
__all__ = [
    "PatchWhitening",
    "PatchWhiteningConfig",
    "apply_patch_whitening",
    "first_conv",
    "patch_covariance",
    "whitening_filters",
]


class PatchWhiteningConfig(ComponentConfig):
    samples: int = Field(5000, ge=1, description="training images whose patches are measured")
    eps: float = Field(
        1e-2, gt=0.0, allow_inf_nan=False, description="added to each eigenvalue before dividing"
    )
    freeze: bool = Field(True, description="keep the whitening filters fixed during training")


def patch_covariance(
    images: torch.Tensor, kernel_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, covariance) of every k x k patch (all channels, no padding) of `images`, in float64.

    Patches are flattened as a convolution weight is (channel, row, column), so filters built
    from the covariance apply directly as conv weights."""
    require_images(images, NAME)
    columns = F.unfold(images.double(), kernel_size)  # (N, C*kh*kw, positions)
    patches = columns.transpose(1, 2).reshape(-1, columns.shape[1])
    mean = patches.mean(dim=0)
    centred = patches - mean
    return mean, centred.T @ centred / max(len(patches) - 1, 1)


def whitening_filters(
    covariance: torch.Tensor, out_channels: int, eps: float = 1e-2
) -> torch.Tensor:
    """`out_channels` whitening filters (rows) for patches with this covariance.

    Row i is the i-th eigenvector (largest eigenvalue first) divided by sqrt(eigenvalue + eps);
    rows beyond the patch dimension d are the negated leading rows, so at most 2d are possible."""
    check_fields(PatchWhiteningConfig, NAME, eps=eps)
    dims = covariance.shape[0]
    if not 1 <= out_channels <= 2 * dims:
        raise ConfigError(
            f"algorithm '{NAME}': a layer with {out_channels} output channels cannot be a "
            f"whitening of {dims}-dimensional patches; it needs between 1 and {2 * dims} "
            "output channels (the filters and their negations)"
        )
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance.double())
    order = torch.argsort(eigenvalues, descending=True)
    eigenvalues, eigenvectors = eigenvalues[order].clamp_min(0.0), eigenvectors[:, order]
    filters = (eigenvectors / torch.sqrt(eigenvalues + eps)).T
    return torch.cat([filters, -filters])[:out_channels]


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The model's first `nn.Conv2d` in module order (the layer that sees the images)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ConfigError(
        f"algorithm '{NAME}' has nothing to act on: the model has no Conv2d. Remove it from "
        "`algorithms`, or use a convolutional model"
    )


@torch.no_grad()
def apply_patch_whitening(
    model: nn.Module, images: torch.Tensor, eps: float = 1e-2, freeze: bool = True
) -> nn.Conv2d:
    """Set the first convolution of `model` to whiten the patches of `images`; returns it.

    The layer must be an ordinary convolution (groups 1, dilation 1) over the images' channels.
    With `freeze` its weight (and bias) stop receiving gradients."""
    check_fields(PatchWhiteningConfig, NAME, eps=eps, freeze=freeze)
    conv = first_conv(model)
    if conv.groups != 1 or conv.dilation != (1, 1):
        raise ConfigError(
            f"algorithm '{NAME}' needs a plain first convolution (groups=1, dilation=1); this "
            f"one has groups={conv.groups}, dilation={conv.dilation}"
        )
    require_images(images, NAME)
    if images.shape[1] != conv.in_channels:
        raise ConfigError(
            f"algorithm '{NAME}': the images have {images.shape[1]} channels but the first "
            f"convolution expects {conv.in_channels}"
        )
    kernel = conv.kernel_size
    mean, covariance = patch_covariance(images.to(conv.weight.device), kernel)  # type: ignore[arg-type]
    filters = whitening_filters(covariance, conv.out_channels, eps)
    conv.weight.copy_(filters.view_as(conv.weight).to(conv.weight.dtype))
    if conv.bias is not None:
        conv.bias.copy_(-(filters @ mean).to(conv.bias.dtype))
    if freeze:
        for parameter in conv.parameters():
            parameter.requires_grad_(False)
    return conv


def training_images(loader: Any, count: int) -> torch.Tensor:
    """The first `count` images the training loader yields (its epoch-0 order)."""
    taken: list[torch.Tensor] = []
    held = 0
    for batch in loader:
        inputs, _ = inputs_and_targets(batch, NAME)
        taken.append(inputs[: count - held])
        held += len(taken[-1])
        if held >= count:
            break
    if not taken:
        raise ConfigError(f"algorithm '{NAME}': the training data yielded no batches")
    return torch.cat(taken)


class PatchWhitening(Algorithm):
    """At INIT, whiten the first convolution from `samples` training images."""

    name = NAME
    Config = PatchWhiteningConfig
    runs_before = ("blurpool", "channels_last", "weight_standardization", "factorize")

    def match(self, event: Event, state: State) -> bool:
        return event == Event.INIT

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        images = training_images(state.train_dataloader, self.config.samples)
        conv = apply_patch_whitening(
            state.unwrapped_model, images, self.config.eps, self.config.freeze
        )
        log.info(
            "patch_whitening: first convolution (%d filters of %s) whitened from %d images%s",
            conv.out_channels,
            "x".join(map(str, conv.kernel_size)),
            len(images),
            ", frozen" if self.config.freeze else "",
        )
