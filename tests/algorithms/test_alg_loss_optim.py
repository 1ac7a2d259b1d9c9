"""Loss, selection, gradient and optimizer methods: each against its closed form, as a plain
function and in a real run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from alg_support import BATCH, Probe, coded_images, decode, tiny_resnet
from torch import nn
from torch.profiler import ProfilerActivity, profile

from tessera.algorithms import get
from tessera.algorithms.fused_optimizer import use_fused_kernels
from tessera.algorithms.gradient_clipping import clip_gradients
from tessera.algorithms.label_smoothing import smooth_labels, smoothed_loss
from tessera.algorithms.sam import SAMOptimizer
from tessera.algorithms.selective_backprop import select_batch, select_by_loss
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


def _loss_outputs_targets(state):
    return state.loss.detach(), state.outputs.detach(), state.batch[1].clone()


def test_label_smoothing_in_a_run_trains_on_the_smoothed_cross_entropy(make_trainer):
    probe = Probe(after_loss=_loss_outputs_targets)
    make_trainer(
        [get("label_smoothing", smoothing=0.3)], batches=2, max_duration="2ba", callbacks=[probe]
    ).fit()
    assert len(probe.seen["after_loss"]) == 2
    for loss, outputs, targets in probe.seen["after_loss"]:
        expected = F.cross_entropy(outputs, targets, label_smoothing=0.3)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
        assert loss.item() != pytest.approx(F.cross_entropy(outputs, targets).item(), rel=1e-3)


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


def test_selective_backprop_in_a_run_trains_only_on_the_kept_samples_when_active(make_trainer):
    data = [coded_images(seed=b) for b in range(4)]
    probe = Probe(
        before_forward=lambda s: [decode(image[0, 14, 14])[0] for image in s.batch[0]],
        after_loss=_loss_outputs_targets,
    )
    make_trainer(
        [get("selective_backprop", keep=0.5, start=0.25, end=1.0, interrupt=2)],
        train_data=data,
        max_duration="4ba",
        callbacks=[probe],
    ).fit()
    # active from a quarter of the run on (batches 1, 2, 3), except every 2nd batch (2)
    sizes = [len(sources) for sources in probe.seen["before_forward"]]
    assert sizes == [BATCH, BATCH // 2, BATCH, BATCH // 2]
    for index in (1, 3):
        kept = probe.seen["before_forward"][index]
        assert len(set(kept)) == len(kept) and set(kept) <= set(range(BATCH))
        loss, outputs, targets = probe.seen["after_loss"][index]
        assert torch.equal(targets, data[index][1][kept])  # each kept sample with its label
        assert outputs.shape[0] == BATCH // 2
        assert loss.item() == pytest.approx(F.cross_entropy(outputs, targets).item(), rel=1e-5)


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


def _gradients(state) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in state.model.parameters() if p.grad is not None]


@pytest.mark.parametrize("kind", ["norm", "value"])
def test_gradient_clipping_in_a_run_bounds_every_step(kind, make_trainer):
    probe = Probe(after_backward=_gradients, before_optimizer_step=_gradients)
    make_trainer(
        [get("gradient_clipping", clipping_type=kind, threshold=0.01)],
        batches=2,
        callbacks=[probe],
    ).fit()
    assert len(probe.seen["before_optimizer_step"]) == 2
    for raw, clipped in zip(probe.seen["after_backward"], probe.seen["before_optimizer_step"]):
        if kind == "norm":
            raw_norm = torch.norm(torch.stack([g.norm() for g in raw]))
            assert raw_norm > 0.01  # the bound had work to do
            norm = torch.norm(torch.stack([g.norm() for g in clipped]))
            assert norm.item() == pytest.approx(0.01, rel=1e-3)
            assert all(torch.allclose(c, r * (norm / raw_norm)) for c, r in zip(clipped, raw))
        else:
            assert max(g.abs().max() for g in raw) > 0.01
            for c, r in zip(clipped, raw):
                assert torch.equal(c, r.clamp(-0.01, 0.01))


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


def test_sam_in_a_run_adds_a_second_pass_on_every_interval_th_step(make_trainer):
    forwards: list[int] = []

    def count_forwards(state):
        state.model.register_forward_hook(lambda *_: forwards.append(state.timestamp.batch))

    trainer = make_trainer(
        [get("sam", rho=0.05, interval=2)], batches=4, callbacks=[Probe(fit_start=count_forwards)]
    )
    trainer.fit()
    wrapper = trainer.state.optimizers[0]
    assert isinstance(wrapper, SAMOptimizer) and wrapper.steps == 4
    assert wrapper.rho == 0.05 and wrapper.interval == 2
    # steps 2 and 4 are SAM steps: a second forward and backward at the perturbed weights
    assert [forwards.count(batch) for batch in range(4)] == [1, 2, 1, 2]


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


@pytest.mark.parametrize("kind", [None, "foreach", "fused"])
def test_fused_optimizer_in_a_run_steps_with_the_multi_tensor_or_fused_kernel(kind, make_trainer):
    model = tiny_resnet()
    methods = [get("fused_optimizer", kind=kind)] if kind else []
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=False)
    trainer = make_trainer(methods, model=model, batches=1, optimizer=optimizer)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        trainer.fit()
    ops = {event.key for event in profiler.key_averages()}
    assert ("aten::_fused_adamw_" in ops) == (kind == "fused")
    assert ("aten::_foreach_addcdiv_" in ops) == (kind == "foreach")
