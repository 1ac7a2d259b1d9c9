"""Loss, selection, gradient and optimizer methods: each against its closed form."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tessera.algorithms.ema import swap_weights, update_average
from tessera.algorithms.fused_optimizer import use_fused_kernels
from tessera.algorithms.gradient_clipping import clip_gradients
from tessera.algorithms.label_smoothing import smooth_labels, smoothed_loss
from tessera.algorithms.sam import SAMOptimizer
from tessera.algorithms.selective_backprop import select_batch, select_by_loss
from tessera.algorithms.swa import add_to_average, recompute_batchnorm
from tessera.core.errors import ConfigError


def test_label_smoothing_equals_the_closed_form():
    torch.manual_seed(0)
    logits, targets = torch.randn(32, 10), torch.randint(0, 10, (32,))
    plain = F.cross_entropy(logits, targets)
    expected = F.cross_entropy(logits, targets, label_smoothing=0.1)
    assert torch.allclose(smoothed_loss(plain, logits, 0.1), expected, atol=1e-6)
    soft = smooth_labels(targets, 10, 0.1)
    assert torch.allclose(soft.sum(1), torch.ones(32))
    assert torch.allclose(soft.max(1).values, torch.full((32,), 0.91))
    assert torch.allclose(-(soft * F.log_softmax(logits, 1)).sum(1).mean(), expected, atol=1e-6)


def test_selective_backprop_keeps_exactly_the_stated_fraction_favouring_high_loss(images):
    losses = torch.arange(100.0)
    chosen = select_by_loss(losses, keep=0.3, beta=4.0, generator=torch.Generator().manual_seed(0))
    assert len(chosen) == 30 and len(set(chosen.tolist())) == 30
    assert losses[chosen].mean() > 60  # uniform selection would average ~50
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    x, y = images
    subset = select_batch((x, y), lambda batch: model(batch[0]), keep=0.25, beta=1.0)
    assert subset[0].shape == (16, 1, 28, 28) and subset[1].shape == (16,)
    rows = {tuple(r[:50].tolist()) for r in x.flatten(1)}
    assert all(tuple(r[:50].tolist()) in rows for r in subset[0].flatten(1))


def _with_grads(values):
    params = [nn.Parameter(torch.ones_like(v)) for v in values]
    for p, v in zip(params, values):
        p.grad = v.clone()
    return params


def test_gradient_clipping_by_norm_value_and_adaptive():
    params = _with_grads([torch.full((3,), 4.0), torch.full((4,), 3.0)])
    clip_gradients(params, "norm", 1.0)
    total = torch.norm(torch.stack([p.grad.norm() for p in params]))
    assert total == pytest.approx(1.0, rel=1e-5)
    params = _with_grads([torch.tensor([-5.0, 0.5, 5.0])])
    clip_gradients(params, "value", 1.0)
    assert params[0].grad.tolist() == [-1.0, 0.5, 1.0]
    weight = nn.Parameter(torch.ones(2, 4))  # each row has norm 2
    weight.grad = torch.tensor([[10.0, 0, 0, 0], [0.1, 0, 0, 0]])
    clip_gradients([weight], "adaptive", 0.5)  # row limit 0.5 * 2 = 1
    assert weight.grad[0].norm() == pytest.approx(1.0, rel=1e-4)
    assert weight.grad[1].norm() == pytest.approx(0.1, rel=1e-4)  # under the limit: unchanged
    with pytest.raises(ConfigError, match="threshold"):
        clip_gradients(params, "norm", -1.0)


def test_ema_update_and_swap():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    average = {"weight": torch.zeros(1, 2)}
    update_average(average, model, smoothing=0.9)
    assert torch.allclose(average["weight"], torch.full((1, 2), 0.1))
    parameter = model.weight
    swap_weights(average, model)
    assert model.weight is parameter and torch.allclose(model.weight, torch.full((1, 2), 0.1))
    assert torch.allclose(average["weight"], torch.ones(1, 2))


def test_sam_steps_with_the_gradient_at_the_perturbed_point():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    x, y = torch.randn(8, 3), torch.randn(8, 1)

    def loss_fn():
        return F.mse_loss(model(x), y)

    start = [p.detach().clone() for p in model.parameters()]
    optimizer = SAMOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), rho=0.5)
    assert optimizer.needs_closure and optimizer.param_groups is optimizer.base.param_groups
    loss_fn().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    norm = torch.norm(torch.stack([g.norm() for g in grads]))
    # the expected update: the gradient at w + rho * g / |g|
    reference = nn.Linear(3, 1)
    with torch.no_grad():
        for r, s, g in zip(reference.parameters(), start, grads):
            r.copy_(s + 0.5 * g / norm)
    F.mse_loss(reference(x), y).backward()
    expected = [s - 0.1 * r.grad for s, r in zip(start, reference.parameters())]

    def closure():
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    optimizer.step(closure)
    for p, e in zip(model.parameters(), expected):
        assert torch.allclose(p, e, atol=1e-6)


def test_swa_running_average_and_batchnorm_recompute():
    model = nn.Linear(1, 1, bias=False)
    average = None
    for count, value in enumerate((1.0, 2.0, 6.0)):
        with torch.no_grad():
            model.weight.fill_(value)
        average = add_to_average(average, count, model)
    assert average["weight"].item() == pytest.approx(3.0)
    bn_model = nn.Sequential(nn.BatchNorm1d(2))
    data = [torch.randn(64, 2) * 3 + 5 for _ in range(4)]
    assert recompute_batchnorm(bn_model, data, max_batches=4) == 4
    assert torch.allclose(bn_model[0].running_mean, torch.cat(data).mean(0), atol=0.05)


def test_fused_optimizer_sets_the_flag_and_refuses_what_cannot_fuse():
    model = nn.Linear(2, 2)
    adam = torch.optim.AdamW(model.parameters())
    use_fused_kernels(adam, "fused")
    assert all(g["fused"] for g in adam.param_groups)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    use_fused_kernels(sgd, "foreach")
    assert all(g["foreach"] for g in sgd.param_groups)
    from tessera.optim.optimizers import SGDW

    with pytest.raises(ConfigError, match="no 'fused' implementation"):
        use_fused_kernels(SGDW(model.parameters(), lr=0.1), "fused")


def test_ema_warmup_keeps_early_averages_close_to_the_current_weights():
    from tessera.algorithms.ema import EMA

    ema = EMA(smoothing=0.99)
    assert ema.current_smoothing() == pytest.approx(0.1)
    ema.updates = 1000
    assert ema.current_smoothing() == 0.99
    assert EMA(smoothing=0.99, warmup=False).current_smoothing() == 0.99
