"""The CIFAR-10 speed-run methods: patch whitening, Lookahead, flip test-time augmentation,
BatchNorm parameter groups and alternating flips each do what their card claims, alone and in
a run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from alg_support import BATCH, Probe, tiny_mlp, tiny_resnet
from torch import nn

from tessera.algorithms import get
from tessera.algorithms.patch_whitening import (
    apply_patch_whitening,
    patch_covariance,
    whitening_filters,
)
from tessera.core.errors import ConfigError

# -- patch whitening -----------------------------------------------------------------------


def _output_covariance(conv: nn.Conv2d, images: torch.Tensor) -> torch.Tensor:
    """Channel covariance of the layer's outputs at every (unpadded) position of `images`."""
    with torch.no_grad():
        outputs = F.conv2d(images.double(), conv.weight.double(), None, conv.stride)
    flat = outputs.transpose(0, 1).reshape(conv.out_channels, -1)
    return torch.cov(flat)


def test_whitened_first_conv_has_identity_output_covariance_on_training_patches(images):
    inputs, _ = images
    conv = nn.Conv2d(1, 9, 3, padding=1, bias=False)  # as many filters as patch dimensions
    apply_patch_whitening(conv, inputs, eps=1e-8)
    covariance = _output_covariance(conv, inputs)
    assert torch.allclose(covariance, torch.eye(9, dtype=torch.float64), atol=1e-3)
    # the raw patches are far from white: strongly correlated neighbouring pixels
    _, raw = patch_covariance(inputs, (3, 3))
    assert raw[0, 1] / raw[0, 0] > 0.5


def test_more_filters_than_patch_dimensions_adds_the_negated_leading_ones(images):
    inputs, _ = images
    conv = nn.Conv2d(1, 16, 3, bias=True)
    apply_patch_whitening(conv, inputs, eps=1e-8, freeze=False)
    weight = conv.weight.detach().view(16, 9)
    assert torch.equal(weight[9:], -weight[:7])
    covariance = _output_covariance(conv, inputs)
    assert torch.allclose(covariance[:9, :9], torch.eye(9, dtype=torch.float64), atol=1e-3)
    # the bias centres every output: the mean response over the training patches is zero
    outputs = conv(inputs).detach()
    assert outputs.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert conv.weight.requires_grad  # freeze=False
    with pytest.raises(ConfigError, match="between 1 and 18"):
        whitening_filters(torch.eye(9), 19)


def test_patch_whitening_in_a_run_whitens_from_the_training_order_and_stays_frozen(make_trainer):
    model = tiny_resnet()
    first = Probe(after_dataloader=lambda state: state.batch[0].detach().clone())
    trainer = make_trainer(
        [get("patch_whitening", samples=2 * BATCH, eps=1e-3)],
        model=model,
        batches=3,
        callbacks=[first],
    )
    stem = model.module.stem[0]
    whitened = stem.weight.detach().clone()
    trainer.fit()
    # the filters are those of the run's first two batches (its epoch-0 order) ...
    seen = torch.cat(first.seen["after_dataloader"][:2])
    _, covariance = patch_covariance(seen, (3, 3))
    expected = whitening_filters(covariance, 8, 1e-3).float().view_as(whitened)
    assert torch.allclose(whitened, expected, atol=1e-5)
    # ... and stayed fixed through training while the rest of the network moved
    assert not stem.weight.requires_grad and torch.equal(stem.weight, whitened)
    assert trainer.state.timestamp.batch == 3
    with pytest.raises(ConfigError, match="no Conv2d"):
        make_trainer([get("patch_whitening")], model=tiny_mlp())
