"""Sparsity: magnitude masks, the cubic schedule, and the 2:4 pattern."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_mlp
from torch import nn

from tessera.algorithms.magnitude_pruning import (
    cubic_sparsity,
    magnitude_mask,
    measured_sparsity,
    prune_model,
)
from tessera.algorithms.semi_structured_sparsity import (
    apply_semi_structured_pruning,
    semi_structured_mask,
    to_semi_structured,
)
from tessera.core.errors import ConfigError


def test_magnitude_mask_zeros_the_smallest_fraction():
    weight = torch.randn(50, 40)
    mask = magnitude_mask(weight, 0.7)
    assert (~mask).float().mean().item() == pytest.approx(0.7, abs=1e-3)
    assert weight.abs()[mask].min() >= weight.abs()[~mask].max()
    with pytest.raises(ConfigError, match=r"sparsity=1\.2"):
        magnitude_mask(weight, 1.2)


def test_cubic_schedule_reaches_the_target_at_end():
    assert cubic_sparsity(0.05, 0.8, 0.1, 0.7) == 0.0
    assert cubic_sparsity(0.4, 0.8, 0.1, 0.7) == pytest.approx(0.8 * (1 - 0.5**3))
    assert cubic_sparsity(0.9, 0.8, 0.1, 0.7) == 0.8


def test_prune_model_skips_first_and_last_layers():
    model = tiny_mlp()
    masks = prune_model(model, 0.5)
    assert list(masks) == ["module.3.weight"]
    assert measured_sparsity(model) == pytest.approx(0.5, abs=1e-3)
    assert (model.module[1].weight != 0).all()


def test_semi_structured_mask_keeps_two_largest_of_every_four():
    weight = torch.randn(64, 128)
    mask = semi_structured_mask(weight)
    groups = mask.view(-1, 4)
    assert (groups.sum(1) == 2).all()
    values = weight.abs().view(-1, 4)
    kept_min = torch.where(groups, values, torch.inf).min(1).values
    dropped_max = torch.where(groups, -torch.inf, values).max(1).values
    assert (kept_min >= dropped_max).all()
    with pytest.raises(ConfigError, match="multiple of 4"):
        semi_structured_mask(torch.randn(4, 6))


def test_semi_structured_pruning_on_a_model_and_cpu_conversion_is_refused():
    model = tiny_mlp()
    masks = apply_semi_structured_pruning(model)
    assert list(masks) == ["module.3"]  # Linear(128, 64): both sides multiples of 64
    weight = model.module[3].weight
    assert ((weight != 0).view(-1, 4).sum(1) <= 2).all()
    with pytest.raises(ConfigError, match=r"compute capability 8\.0"):
        to_semi_structured(model)
    assert isinstance(model.module[3], nn.Linear)
