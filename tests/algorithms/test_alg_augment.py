"""Batch-transform methods on real Fashion-MNIST images."""

from __future__ import annotations

import pytest
import torch

from tessera.algorithms.augmix import augmix_batch
from tessera.algorithms.colout import colout_batch
from tessera.algorithms.cutmix import cutmix_batch
from tessera.algorithms.cutout import cutout_batch
from tessera.algorithms.image_ops import OPS, to_unit_range
from tessera.algorithms.mixup import mixup_batch
from tessera.algorithms.progressive_resizing import resize_batch, resizing_scale
from tessera.algorithms.randaugment import randaugment_batch
from tessera.core.errors import ConfigError


def test_mixup_is_the_stated_convex_combination(images):
    x, y = images
    permutation = torch.roll(torch.arange(len(x)), 1)
    mixed, targets, permuted, lam = mixup_batch(x, y, mixing=0.7, permutation=permutation)
    assert lam == 0.7 and torch.equal(targets, y) and torch.equal(permuted, y[permutation])
    assert torch.allclose(mixed, 0.7 * x + 0.3 * x[permutation])
    generator = torch.Generator().manual_seed(0)
    lams = [mixup_batch(x[:4], y[:4], alpha=0.2, generator=generator)[3] for _ in range(100)]
    # Beta(0.2, 0.2) piles up near 0 and 1
    assert sum(lam < 0.1 or lam > 0.9 for lam in lams) > 50


def test_cutmix_pastes_one_box_and_lam_is_the_kept_area(images):
    x, y = images
    torch.manual_seed(3)
    mixed, _, permuted, lam = cutmix_batch(x, y, alpha=1.0)
    changed = (mixed != x).any(dim=1)  # (N, H, W)
    differs = (x != x[torch.randperm(len(x))]).any()
    assert differs
    # the box has the same location in every image: its area is 1 - lam of the image
    box = (mixed != x).any(dim=0).any(dim=0)
    rows, cols = box.any(dim=1).nonzero(), box.any(dim=0).nonzero()
    if len(rows):
        area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert area <= (1.0 - lam) * 28 * 28 + 1e-6
    assert changed.shape == (64, 28, 28) and 0.0 <= lam <= 1.0
    assert permuted.shape == y.shape


def test_cutout_zeros_a_square_of_the_stated_side(images):
    x = torch.ones(16, 1, 28, 28)
    out = cutout_batch(x, length=0.25, num_holes=1, generator=torch.Generator().manual_seed(1))
    zeros = (out == 0).flatten(1).sum(1)
    side = round(0.25 * 28)
    assert (zeros <= (side // 2 * 2 + 1) ** 2).all() and (zeros > 0).all()
    real = cutout_batch(images[0], length=0.5)
    assert real.shape == images[0].shape and (real == 0).any()
    with pytest.raises(ConfigError, match="length"):
        cutout_batch(x, length=1.5)


def test_randaugment_changes_images_keeps_shape_and_range(images):
    x = images[0][:32]
    out = randaugment_batch(x, depth=2, severity=9, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    changed = (out - x).flatten(1).abs().amax(1) > 1e-4
    assert changed.float().mean() > 0.5
    assert out.min() >= x.min() - 1e-4 and out.max() <= x.max() + 1e-4
    assert randaugment_batch(x, depth=1, severity=0).shape == x.shape


def test_every_image_op_keeps_the_unit_range(images):
    unit, _, _ = to_unit_range(images[0][:8])
    for name, op in OPS.items():
        out = op(unit, torch.full((8,), 0.9), torch.Generator().manual_seed(0))
        assert out.shape == unit.shape, name
        assert out.min() >= -1e-5 and out.max() <= 1 + 1e-5, name


def test_augmix_blends_with_the_original(images):
    x = images[0][:16]
    out = augmix_batch(x, severity=3, width=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    # a blend of the original and augmented views stays correlated with the original
    correlation = torch.corrcoef(torch.stack([out.flatten(), x.flatten()]))[0, 1]
    assert 0.3 < correlation < 0.999


def test_colout_drops_the_stated_rows_and_columns_in_order(images):
    x = torch.arange(28.0).view(1, 1, 1, 28).expand(4, 1, 28, 28)
    out = colout_batch(x, p_row=0.25, p_col=0.5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 1, 21, 14)
    kept_columns = out[0, 0, 0]
    assert torch.all(kept_columns[1:] > kept_columns[:-1])
    assert colout_batch(images[0], 0.1, 0.1).shape == (64, 1, 25, 25)


def test_progressive_resizing_schedule_and_sizes(images):
    assert resizing_scale(0.1, 0.5, delay=0.4, finetune=0.2) == 0.5
    assert resizing_scale(0.6, 0.5, delay=0.4, finetune=0.2) == pytest.approx(0.75)
    assert resizing_scale(0.9, 0.5, delay=0.4, finetune=0.2) == 1.0
    small = resize_batch(images[0], 0.5)
    assert small.shape == (64, 1, 16, 16)  # 14 rounded to a multiple of 4
    cropped = resize_batch(images[0], 0.5, mode="crop")
    assert torch.equal(cropped, images[0][..., 6:22, 6:22])
    assert resize_batch(images[0], 1.0) is images[0]
