"""The CIFAR-10 speed-run methods: patch whitening, Lookahead, flip test-time augmentation,
BatchNorm parameter groups and alternating flips each do what their card claims, alone and in
a run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from alg_support import BATCH, EVERY_BATCH, Probe, tiny_mlp, tiny_resnet, weights_of
from torch import nn

from tessera.algorithms import get
from tessera.algorithms.batchnorm_groups import batchnorm_parameters, split_batchnorm_groups
from tessera.algorithms.flip_tta import flip_tta_outputs
from tessera.algorithms.horizontal_flip import flip_batch, image_coins
from tessera.algorithms.lookahead import LookaheadOptimizer, lookahead_alpha
from tessera.algorithms.patch_whitening import (
    apply_patch_whitening,
    patch_covariance,
    whitening_filters,
)
from tessera.core.errors import CheckpointError, ConfigError
from tessera.optim.optimizers import SGDW, parameter_groups
from tessera.optim.schedulers import CosineWarmup, ScheduledLR

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


# -- Lookahead -------------------------------------------------------------------------------


def _constant_gradient_model(gradient: torch.Tensor) -> tuple[nn.Parameter, callable]:
    weight = nn.Parameter(torch.zeros_like(gradient))

    def loss() -> torch.Tensor:
        return (weight * gradient).sum()  # d loss / d weight = gradient, at every point

    return weight, loss


def test_lookahead_slow_weights_equal_the_closed_form_after_k_steps():
    gradient = torch.tensor([1.0, -2.0, 0.5])
    weight, loss = _constant_gradient_model(gradient)
    lr, k, alpha = 0.1, 3, 0.4
    optimizer = LookaheadOptimizer(torch.optim.SGD([weight], lr=lr), k=k, alpha=alpha)
    assert optimizer.param_groups is optimizer.base.param_groups
    history, slow = [], []
    for _ in range(2 * k + 1):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
        history.append(weight.detach().clone())
        slow.append(optimizer.slow[0].clone())
    # k fast steps reach -k lr g; the slow weights (and the restarted fast ones) go alpha of it
    assert torch.allclose(history[k - 2], -(k - 1) * lr * gradient)  # before the first sync
    assert torch.allclose(history[k - 1], -alpha * k * lr * gradient)
    assert torch.equal(slow[0], torch.zeros(3))  # the weights before the first step
    assert torch.allclose(slow[k - 1], -alpha * k * lr * gradient)
    assert torch.allclose(history[2 * k - 1], -2 * alpha * k * lr * gradient)
    assert torch.allclose(history[2 * k], (-2 * alpha * k - 1) * lr * gradient)


def test_lookahead_state_round_trips_and_refuses_a_plain_optimizer_state():
    gradient = torch.tensor([1.0, 2.0])
    weight, loss = _constant_gradient_model(gradient)
    optimizer = LookaheadOptimizer(torch.optim.SGD([weight], lr=0.1, momentum=0.9), k=2)
    for _ in range(3):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    saved = optimizer.state_dict()
    other_weight, _ = _constant_gradient_model(gradient)
    other = LookaheadOptimizer(torch.optim.SGD([other_weight], lr=0.1, momentum=0.9), k=2)
    other.load_state_dict(saved)
    assert other.steps == 3 and torch.equal(other.slow[0], optimizer.slow[0])
    assert torch.equal(
        other.state[other_weight]["momentum_buffer"], optimizer.state[weight]["momentum_buffer"]
    )
    with pytest.raises(CheckpointError, match="not wrapped by Lookahead"):
        other.load_state_dict(torch.optim.SGD([other_weight], lr=0.1).state_dict())


def test_lookahead_alpha_follows_the_cubic_to_its_end_value():
    assert lookahead_alpha(0.5, None, 0.7) == 0.5
    assert lookahead_alpha(1.0, 0.2, 0.0) == 1.0
    assert lookahead_alpha(1.0, 0.2, 0.5) == pytest.approx(1.0 - 0.8 * 0.125)
    assert lookahead_alpha(1.0, 0.2, 1.0) == pytest.approx(0.2)


def _lookahead_run(make_trainer, tmp_path, name, load_path=None):
    torch.manual_seed(0)
    model = tiny_resnet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    trainer = make_trainer(
        [get("lookahead", k=2, alpha=0.5, sync_at_end=False)],
        model=model,
        optimizer=optimizer,
        batches=3,
        max_duration="2ep",
        run_dir=tmp_path,
        name=name,
        load_path=load_path,
        **EVERY_BATCH,
        shuffle=False,
    )
    trainer.fit()
    return trainer


def test_lookahead_in_a_run_resumes_mid_cycle_exactly(make_trainer, tmp_path):
    full = _lookahead_run(make_trainer, tmp_path, "full")
    wrapper = full.state.optimizers[0]
    assert isinstance(wrapper, LookaheadOptimizer) and wrapper.steps == 6
    # batch 5 is mid-epoch and mid-cycle (k=2): the fast weights are one step past the slow
    middle = tmp_path / "full" / "checkpoints" / "ep1-ba5.pt"
    assert middle.is_file()
    resumed = _lookahead_run(make_trainer, tmp_path, "resumed", load_path=middle)
    assert resumed.resumed_from == middle
    final, again = weights_of(full.state.model), weights_of(resumed.state.model)
    assert all(torch.equal(final[k], again[k]) for k in final)
    assert all(torch.equal(a, b) for a, b in zip(wrapper.slow, resumed.state.optimizers[0].slow))


def test_lookahead_alpha_falls_over_a_run_and_the_run_ends_on_the_slow_weights(make_trainer):
    alphas = Probe(after_optimizer_step=lambda state: state.optimizers[0].alpha)
    trainer = make_trainer(
        [get("lookahead", k=2, alpha=0.8, alpha_end=0.2)], batches=3, callbacks=[alphas]
    )
    trainer.fit()
    wrapper = trainer.state.optimizers[0]
    # set before each step from the progress so far: 0, 1/3, 2/3 of the 3-batch run
    expected = [lookahead_alpha(0.8, 0.2, step / 3) for step in range(3)]
    assert alphas.seen["after_optimizer_step"] == pytest.approx(expected)
    assert expected[0] > expected[-1]
    # 3 steps with k=2: the end of the run synchronised once more, onto the slow weights
    params = [p for group in wrapper.param_groups for p in group["params"]]
    assert all(torch.equal(p, s) for p, s in zip(params, wrapper.slow))


# -- flip test-time augmentation ---------------------------------------------------------------


def test_flip_tta_evaluation_logits_are_the_mean_of_the_two_views(make_trainer):
    model = tiny_resnet()
    seen = Probe(eval_after_forward=lambda state: (state.batch[0].clone(), state.outputs.clone()))
    trainer = make_trainer(
        [get("flip_tta")], model=model, batches=2, evaluate=True, callbacks=[seen]
    )
    trainer.fit()
    network = model.module.eval()
    inputs, outputs = seen.seen["eval_after_forward"][-1]
    with torch.no_grad():
        plain, mirrored = network(inputs), network(inputs.flip(-1))
    assert torch.allclose(outputs, (plain + mirrored) / 2, atol=1e-5)
    assert not torch.allclose(outputs, plain, atol=1e-3)  # the mirror view did count
    # the flip is along the chosen axis: rows (-2) average the first row with the last
    first_row = flip_tta_outputs(lambda x: x[:, 0, 0, :5], inputs, dim=-2)
    assert torch.allclose(first_row, (inputs[:, 0, 0, :5] + inputs[:, 0, -1, :5]) / 2)


def test_flip_tta_leaves_training_unchanged(make_trainer):
    plain, augmented = tiny_resnet(seed=1), tiny_resnet(seed=1)
    make_trainer([], model=plain, batches=2, evaluate=True, shuffle=False).fit()
    make_trainer([get("flip_tta")], model=augmented, batches=2, evaluate=True, shuffle=False).fit()
    trained, again = weights_of(plain), weights_of(augmented)
    assert all(torch.equal(trained[k], again[k]) for k in trained)


# -- BatchNorm parameter groups ------------------------------------------------------------------


def test_batchnorm_groups_have_the_stated_lr_and_no_weight_decay():
    model = tiny_resnet().module
    optimizer = SGDW(parameter_groups(model, weight_decay=5e-4, decay_norm_and_bias=True), lr=0.2)
    scheduler = ScheduledLR(optimizer, CosineWarmup(t_warmup="0ba", t_max="10ba"))
    moved = split_batchnorm_groups(model, optimizer, lr_factor=8.0, schedulers=[scheduler])
    bn = {id(p) for p in batchnorm_parameters(model)}
    assert moved == len(bn) > 0
    old, new = optimizer.param_groups
    assert not any(id(p) in bn for p in old["params"])
    assert {id(p) for p in new["params"]} == bn
    assert old["lr"] == 0.2 and old["decoupled_weight_decay"] == 5e-4
    assert new["lr"] == pytest.approx(1.6)
    assert new["decoupled_weight_decay"] == 0.0 and new["weight_decay"] == 0.0
    assert scheduler.base_lrs == [0.2, pytest.approx(1.6)]
    # the schedule keeps scaling both groups in proportion
    assert [lr / 0.2 for lr in scheduler.get_lr()] == pytest.approx([1.0, 8.0])
    with pytest.warns(UserWarning, match="no BatchNorm parameter"):
        split_batchnorm_groups(nn.Linear(2, 2), torch.optim.SGD(nn.Linear(2, 2).parameters()))


def test_batchnorm_groups_in_a_run_step_bn_biases_by_the_factor_and_fix_the_scales(make_trainer):
    model = tiny_resnet()
    bn = model.module.stem[1]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    grads = Probe(before_optimizer_step=lambda state: bn.bias.grad.clone())
    biases = Probe(after_optimizer_step=lambda state: bn.bias.detach().clone())
    start_scale, start_bias = bn.weight.detach().clone(), bn.bias.detach().clone()
    trainer = make_trainer(
        [get("batchnorm_groups", lr_factor=4.0, train_scale=False)],
        model=model,
        optimizer=optimizer,
        batches=2,
        callbacks=[grads, biases],
    )
    groups = trainer.state.optimizers[0].param_groups
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(4e-3)]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    trainer.fit()
    # Adam's first step moves each weight by lr (times the gradient's sign): 4x the base rate
    step = biases.seen["after_optimizer_step"][0] - start_bias
    moved = grads.seen["before_optimizer_step"][0].abs() > 1e-4
    assert moved.sum() > 0
    assert torch.allclose(step[moved].abs(), torch.full_like(step[moved], 4e-3), rtol=1e-3)
    assert not bn.weight.requires_grad and torch.equal(bn.weight, start_scale)
    with pytest.raises(ConfigError, match="no BatchNorm layer"):
        make_trainer([get("batchnorm_groups")], model=tiny_mlp())


# -- horizontal flips ----------------------------------------------------------------------------


def test_alternating_flip_mirrors_each_image_once_in_every_two_epochs(images):
    inputs, _ = images
    even, odd = (
        flip_batch(inputs, "alternating", epoch=4),
        flip_batch(inputs, "alternating", epoch=5),
    )
    mirrored = inputs.flip(-1)
    for index in range(len(inputs)):
        flipped_even = torch.equal(even[index], mirrored[index])
        assert flipped_even != torch.equal(odd[index], mirrored[index])
        assert torch.equal(even[index], inputs[index]) != flipped_even
    # each image's coin is its own: the same in any batch order, about half of them heads
    coins = image_coins(inputs, seed=3)
    order = torch.randperm(len(inputs))
    assert torch.equal(image_coins(inputs[order], seed=3), coins[order])
    assert 16 <= int(coins.sum()) <= 48
    assert not torch.equal(image_coins(inputs, seed=4), coins)


def test_random_flip_mirrors_about_half_of_the_images(images):
    inputs, _ = images
    flipped = flip_batch(inputs, "random", generator=torch.Generator().manual_seed(0))
    mirrored = [torch.equal(f, m) for f, m in zip(flipped, inputs.flip(-1))]
    kept = [torch.equal(f, i) for f, i in zip(flipped, inputs)]
    assert all(a != b for a, b in zip(mirrored, kept))
    assert 16 <= sum(mirrored) <= 48


def test_horizontal_flip_in_a_run_alternates_by_epoch(make_trainer):
    seen = Probe(after_dataloader=lambda state: state.batch[0].clone())
    make_trainer(
        [get("horizontal_flip")], batches=2, max_duration="2ep", shuffle=False, callbacks=[seen]
    ).fit()
    first, second = (
        torch.cat(seen.seen["after_dataloader"][:2]),
        torch.cat(seen.seen["after_dataloader"][2:]),
    )
    same = [torch.equal(a, b) for a, b in zip(first, second)]
    mirrored = [torch.equal(a, b.flip(-1)) for a, b in zip(first, second)]
    assert all(mirrored) and not any(same)  # every image the other way round in epoch 2
