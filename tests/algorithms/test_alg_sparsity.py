"""Sparsity: magnitude masks, the cubic schedule and the 2:4 pattern, as plain functions and
in real runs (the stated sparsity at each point of the run, zeros that stay zero)."""

from __future__ import annotations

import pytest
import torch
from alg_support import Metrics, Probe, tiny_mlp, tiny_resnet
from torch import nn

from tessera.algorithms import get
from tessera.algorithms.magnitude_pruning import (
    cubic_sparsity,
    magnitude_mask,
    measured_sparsity,
    prunable_weights,
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


def _zero_fractions(model) -> dict[str, float]:
    return {n: float((w == 0).float().mean()) for n, w in prunable_weights(model).items()}


def test_magnitude_pruning_in_a_run_follows_the_cubic_schedule_and_keeps_zeros(make_trainer):
    model = tiny_resnet()
    weights = prunable_weights(model)
    assert "module.stem.0.weight" not in weights and "module.fc.weight" not in weights
    metrics = Metrics()
    probe = Probe(after_optimizer_step=lambda state: _zero_fractions(state.model))
    zeros_at: list[dict[str, torch.Tensor]] = []
    masks = Probe(
        after_optimizer_step=lambda s: zeros_at.append(
            {n: w == 0 for n, w in prunable_weights(s.model).items()}
        )
    )
    make_trainer(
        [get("magnitude_pruning", target_sparsity=0.6, start=0.0, end=0.5, update_interval=1)],
        model=model,
        batches=4,
        callbacks=[probe, masks],
        loggers=[metrics],
    ).fit()
    # s(t) = 0.6 (1 - (1 - t / 0.5)^3) at progress t = b / 4 of batch b: 0, 0.525, 0.6, 0.6
    assert metrics.values("magnitude_pruning/sparsity") == pytest.approx([0.525, 0.6])
    for fractions, target in zip(probe.seen["after_optimizer_step"], [0.0, 0.525, 0.6, 0.6]):
        for name, fraction in fractions.items():
            numel = weights[name].numel()
            assert fraction == pytest.approx(int(target * numel) / numel, abs=1e-6), name
    for name in weights:  # what was pruned stays zero while the rest trains on
        assert (zeros_at[1][name] <= zeros_at[3][name]).all()
    assert measured_sparsity(model) == pytest.approx(0.6, abs=0.01)
    assert (model.module.stem[0].weight != 0).all() and (model.module.fc.weight != 0).all()


def _is_two_of_four(weight: torch.Tensor) -> bool:
    return bool(((weight != 0).view(-1, 4).sum(1) == 2).all())


def test_semi_structured_sparsity_in_a_run_prunes_to_two_of_four_from_start_on(make_trainer):
    model = tiny_mlp()
    layers = model.module
    probe = Probe(
        after_optimizer_step=lambda s: [_is_two_of_four(layers[i].weight) for i in (1, 3, 5)]
    )
    metrics = Metrics()
    make_trainer(
        [get("semi_structured_sparsity", start=0.5)],
        model=model,
        batches=4,
        callbacks=[probe],
        loggers=[metrics],
    ).fit()
    # only Linear(128, 64) has both sides multiples of 64; it is pruned at progress 0.5 (batch 2)
    assert probe.seen["after_optimizer_step"] == [
        [False, False, False],
        [False, False, False],
        [False, True, False],
        [False, True, False],
    ]
    assert metrics.values("semi_structured_sparsity/layers") == [1]
