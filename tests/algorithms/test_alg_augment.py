"""Batch-transform methods, on real Fashion-MNIST images and on `coded_images` (whose values
say which image, row and column they came from), as plain functions and in real runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from alg_support import BATCH, Metrics, Probe, coded_images, decode, inputs_of

from tessera.algorithms import get
from tessera.algorithms.augmix import augmix_batch
from tessera.algorithms.colout import colout_batch
from tessera.algorithms.cutmix import cutmix_batch
from tessera.algorithms.cutout import cutout_batch
from tessera.algorithms.image_ops import OPS, to_unit_range
from tessera.algorithms.mixup import mixup_batch
from tessera.algorithms.progressive_resizing import resize_batch, resizing_scale
from tessera.algorithms.randaugment import randaugment_batch
from tessera.core.errors import ConfigError


def _source_images(mixed: torch.Tensor, x: torch.Tensor, lam: float) -> list[int]:
    """For each mixed coded image, the image j with mixed = lam * x + (1 - lam) * x[j]."""
    other = (mixed - lam * x) / (1.0 - lam)
    return [decode(image[0, 14, 14])[0] for image in other]


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


def _mixed_batches(make_trainer, name, batches=2):
    data = [coded_images(seed=b) for b in range(batches)]
    metrics = Metrics()
    probe = Probe(
        before_forward=inputs_of,
        after_loss=lambda s: (s.loss.detach(), s.outputs.detach(), s.batch[1].clone()),
    )
    method = get(name, alpha=1.0)
    permuted: list[torch.Tensor] = []
    keep = Probe(after_loss=lambda s: permuted.append(method.permuted_targets.clone()))
    make_trainer(
        [method],
        train_data=data,
        max_duration=f"{batches}ba",
        callbacks=[probe, keep],
        loggers=[metrics],
    ).fit()
    return data, probe, metrics.values(f"{name}/lambda"), permuted


def test_mixup_in_a_run_trains_on_convex_pairs_with_the_logged_lambda(make_trainer):
    data, probe, lams, permuted = _mixed_batches(make_trainer, "mixup")
    assert len(lams) == 2 and all(0.0 < lam < 1.0 for lam in lams)
    for (x, y), mixed, lam, other, seen in zip(
        data, probe.seen["before_forward"], lams, permuted, probe.seen["after_loss"]
    ):
        sources = _source_images(mixed, x, lam)
        assert sorted(sources) == list(range(BATCH))  # a permutation of the batch
        assert torch.allclose(mixed, lam * x + (1 - lam) * x[sources], atol=1e-5)
        assert torch.equal(other, y[sources])
        loss, outputs, targets = seen
        expected = lam * F.cross_entropy(outputs, targets) + (1 - lam) * F.cross_entropy(
            outputs, other
        )
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_cutmix_pastes_one_box_whose_area_is_one_minus_lambda():
    x, y = coded_images()
    mixed, targets, permuted, lam = cutmix_batch(
        x, y, alpha=1.0, generator=torch.Generator().manual_seed(3)
    )
    box = (mixed != x).any(dim=0)[0]  # (H, W): where any image changed
    rows, cols = box.any(dim=1).nonzero().flatten(), box.any(dim=0).nonzero().flatten()
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    assert box[top:bottom, left:right].all() and box.sum() == (bottom - top) * (right - left)
    assert lam == pytest.approx(1.0 - box.sum().item() / (28 * 28))
    sources = [decode(image[0, top, left])[0] for image in mixed]
    assert torch.equal(mixed[..., top:bottom, left:right], x[sources][..., top:bottom, left:right])
    assert torch.equal(mixed[..., ~box], x[..., ~box])
    assert torch.equal(targets, y) and torch.equal(permuted, y[sources])


def test_cutmix_in_a_run_pastes_a_box_of_the_logged_area_and_mixes_the_loss(make_trainer):
    data, probe, lams, permuted = _mixed_batches(make_trainer, "cutmix", batches=3)
    assert len(lams) == 3 and any(lam < 1.0 for lam in lams)
    for (x, y), mixed, lam, other, seen in zip(
        data, probe.seen["before_forward"], lams, permuted, probe.seen["after_loss"]
    ):
        changed = (mixed != x).any(dim=0)[0]
        assert changed.sum().item() == pytest.approx((1.0 - lam) * 28 * 28)
        if changed.any():
            r, c = (int(i[0]) for i in changed.nonzero(as_tuple=True))
            sources = [decode(image[0, r, c])[0] for image in mixed]
            assert torch.equal(other, y[sources])
        loss, outputs, targets = seen
        expected = lam * F.cross_entropy(outputs, targets) + (1 - lam) * F.cross_entropy(
            outputs, other
        )
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def _zero_box(image: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, height, left, width) of the zeros of a (1, H, W) image; they must be one box."""
    zeros = image[0] == 0
    rows, cols = zeros.any(dim=1).nonzero().flatten(), zeros.any(dim=0).nonzero().flatten()
    top, height = int(rows[0]), int(rows[-1] - rows[0]) + 1
    left, width = int(cols[0]), int(cols[-1] - cols[0]) + 1
    assert zeros.sum() == height * width, "the zeroed pixels are not one square"
    return top, height, left, width


def _check_hole(image: torch.Tensor, side: int) -> None:
    top, height, left, width = _zero_box(image)
    size = image.shape[-1]
    # a full square, or one cut by the border it touches
    assert height == side or (height < side and (top == 0 or top + height == size))
    assert width == side or (width < side and (left == 0 or left + width == size))


def test_cutout_zeros_one_square_of_the_stated_side(images):
    x = torch.ones(64, 1, 28, 28)
    out = cutout_batch(x, length=0.25, num_holes=1, generator=torch.Generator().manual_seed(1))
    for image in out:
        _check_hole(image, side=7)  # round(0.25 * 28) = 7
    assert (out.flatten(1) == 0).sum(1).float().mean() > 30
    with pytest.raises(ConfigError, match="length"):
        cutout_batch(x, length=1.5)


def test_cutout_in_a_run_zeros_one_square_in_every_image(make_trainer):
    # Normalised Fashion-MNIST pixels are never exactly 0, so the zeros are the holes.
    probe = Probe(before_forward=inputs_of)
    make_trainer([get("cutout", length=0.25)], batches=2, callbacks=[probe]).fit()
    assert len(probe.seen["before_forward"]) == 2
    for batch in probe.seen["before_forward"]:
        for image in batch:
            _check_hole(image, side=7)


def test_randaugment_changes_images_keeps_shape_and_range(images):
    x = images[0][:32]
    out = randaugment_batch(x, depth=2, severity=9, generator=torch.Generator().manual_seed(0))
    _check_augmented(out, x)
    assert randaugment_batch(x, depth=1, severity=0).shape == x.shape


def _check_augmented(out: torch.Tensor, x: torch.Tensor) -> None:
    """Same shape, most images changed, each image inside its own original value range."""
    assert out.shape == x.shape and torch.isfinite(out).all()
    changed = (out - x).flatten(1).abs().amax(1) > 1e-4
    assert changed.float().mean() > 0.5
    low, high = x.flatten(1).amin(1), x.flatten(1).amax(1)
    assert (out.flatten(1).amin(1) >= low - 1e-4).all()
    assert (out.flatten(1).amax(1) <= high + 1e-4).all()


@pytest.mark.parametrize("name", ["randaugment", "augmix"])
def test_augmentation_in_a_run_changes_the_training_images_within_their_range(
    name, make_trainer, fashion_test
):
    probe = Probe(before_forward=inputs_of)
    make_trainer([get(name)], batches=2, shuffle=False, callbacks=[probe]).fit()
    for index, out in enumerate(probe.seen["before_forward"]):
        original = fashion_test.images[BATCH * index : BATCH * (index + 1)]
        _check_augmented(out, original)
        if name == "augmix":  # a blend with the original stays correlated with it
            correlation = torch.corrcoef(torch.stack([out.flatten(), original.flatten()]))[0, 1]
            assert 0.3 < correlation < 0.999


def test_every_image_op_keeps_the_unit_range(images):
    unit, _, _ = to_unit_range(images[0][:8])
    for name, op in OPS.items():
        out = op(unit, torch.full((8,), 0.9), torch.Generator().manual_seed(0))
        assert out.shape == unit.shape, name
        assert out.min() >= -1e-5 and out.max() <= 1 + 1e-5, name


def test_augmix_blends_with_the_original(images):
    x = images[0][:16]
    out = augmix_batch(x, severity=3, width=3, generator=torch.Generator().manual_seed(0))
    _check_augmented(out, x)
    correlation = torch.corrcoef(torch.stack([out.flatten(), x.flatten()]))[0, 1]
    assert 0.3 < correlation < 0.999


def _kept_rows_and_columns(out: torch.Tensor) -> tuple[list[int], list[int]]:
    """The source rows and columns of a ColOut'ed coded batch; the same in every image."""
    rows = [decode(out[0, 0, r, 0])[1] for r in range(out.shape[2])]
    cols = [decode(out[0, 0, 0, c])[2] for c in range(out.shape[3])]
    for i in range(len(out)):
        expected = torch.tensor([[i + (28 * r + c) / 1000 for c in cols] for r in rows])
        assert torch.allclose(out[i, 0], expected, atol=1e-5)
    return rows, cols


def test_colout_drops_the_stated_rows_and_columns_and_keeps_the_order(images):
    x, _ = coded_images()
    out = colout_batch(x, p_row=0.25, p_col=0.5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (16, 1, 21, 14)
    rows, cols = _kept_rows_and_columns(out)
    assert rows == sorted(set(rows)) and cols == sorted(set(cols))
    assert colout_batch(images[0], 0.1, 0.1).shape == (64, 1, 25, 25)


def test_colout_in_a_run_trains_on_the_kept_rows_and_columns(make_trainer):
    probe = Probe(before_forward=inputs_of)
    data = [coded_images(seed=b) for b in range(2)]
    make_trainer([get("colout")], train_data=data, max_duration="2ba", callbacks=[probe]).fit()
    kept = []
    for out in probe.seen["before_forward"]:
        assert out.shape == (BATCH, 1, 24, 24)  # round(0.85 * 28) rows and columns kept
        kept.append(_kept_rows_and_columns(out))
    assert kept[0] != kept[1]  # a new random choice for every batch


def test_progressive_resizing_schedule_and_sizes(images):
    assert resizing_scale(0.1, 0.5, delay=0.4, finetune=0.2) == 0.5
    assert resizing_scale(0.6, 0.5, delay=0.4, finetune=0.2) == pytest.approx(0.75)
    assert resizing_scale(0.9, 0.5, delay=0.4, finetune=0.2) == 1.0
    small = resize_batch(images[0], 0.5)
    assert small.shape == (64, 1, 16, 16)  # 14 rounded to a multiple of 4
    cropped = resize_batch(images[0], 0.5, mode="crop")
    assert torch.equal(cropped, images[0][..., 6:22, 6:22])
    assert resize_batch(images[0], 1.0) is images[0]


def test_progressive_resizing_in_a_run_trains_at_the_scheduled_size_and_evaluates_full(
    make_trainer,
):
    sizes = Probe(before_forward=lambda s: tuple(s.batch[0].shape[-2:]))
    evaluated = Probe(eval_before_forward=lambda s: tuple(s.batch[0].shape[-2:]))
    make_trainer(
        [get("progressive_resizing", initial_scale=0.5, delay=0.0, finetune=0.2)],
        batches=4,
        evaluate=True,
        callbacks=[sizes, evaluated],
    ).fit()
    # scale at progress p: 0.5 + 0.5 * p / 0.8, i.e. 0.5, 0.656, 0.812, 0.969 at batches 0..3;
    # sides 28 * scale rounded to a multiple of 4: 16, 20, 24 and 28 (full size)
    assert sizes.seen["before_forward"] == [(16, 16), (20, 20), (24, 24), (28, 28)]
    assert evaluated.seen["eval_before_forward"] == [(28, 28)]
