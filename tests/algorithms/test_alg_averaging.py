"""Weight averaging: EMA and SWA hold exactly the closed-form average of the weights they saw,
evaluate/finish with it, and SWA re-estimates the BatchNorm statistics for it."""

from __future__ import annotations

import pytest
import torch
from alg_support import BATCH, Probe, tiny_resnet, weights_of
from torch import nn

from tessera.algorithms import get
from tessera.algorithms.ema import EMA, swap_weights, update_ema
from tessera.algorithms.swa import recompute_batchnorm, update_swa


def _assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for name in expected:
        assert torch.allclose(actual[name], expected[name], atol=1e-6), name


def test_ema_update_and_swap():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    average = {"weight": torch.zeros(1, 2)}
    update_ema(average, model, smoothing=0.9)
    assert torch.allclose(average["weight"], torch.full((1, 2), 0.1))
    parameter = model.weight
    swap_weights(average, model)
    assert model.weight is parameter and torch.allclose(model.weight, torch.full((1, 2), 0.1))
    assert torch.allclose(average["weight"], torch.ones(1, 2))


def test_ema_warmup_keeps_early_averages_close_to_the_current_weights():
    ema = EMA(smoothing=0.99)
    assert ema.current_smoothing() == pytest.approx(0.1)
    ema.updates = 1000
    assert ema.current_smoothing() == 0.99
    assert EMA(smoothing=0.99, warmup=False).current_smoothing() == 0.99


def test_ema_in_a_run_evaluates_and_ends_with_the_closed_form_average(make_trainer):
    events: list[tuple[str, dict[str, torch.Tensor]]] = []

    def record(tag):
        return lambda state: events.append((tag, weights_of(state.model)))

    probe = Probe(
        fit_start=record("start"),
        after_optimizer_step=record("step"),
        eval_start=record("eval"),
        eval_end=record("eval_end"),
    )
    model = tiny_resnet()
    make_trainer(
        [get("ema", smoothing=0.2)],
        model=model,
        batches=2,
        max_duration="2ep",
        evaluate=True,
        callbacks=[probe],
    ).fit()
    assert [tag for tag, _ in events].count("step") == 4
    assert [tag for tag, _ in events].count("eval") >= 2
    average: dict[str, torch.Tensor] = {}
    updates, last_step = 0, None
    for tag, weights in events:
        if tag == "start":
            average = {k: v.clone() for k, v in weights.items()}
        elif tag == "step":
            # warmup: s = min(0.2, (1 + n) / (10 + n)) after n updates: 0.1, 0.18, 0.2, 0.2
            s = min(0.2, (1 + updates) / (10 + updates))
            average = {k: s * average[k] + (1 - s) * weights[k] for k in average}
            updates, last_step = updates + 1, weights
        elif tag == "eval":  # evaluation runs with the average ...
            _assert_same(weights, average)
        else:  # ... and training goes on with the trained weights
            _assert_same(weights, last_step)
    _assert_same(weights_of(model), average)  # replace_at_end
    assert not torch.allclose(average["module.fc.weight"], last_step["module.fc.weight"])


def test_ema_without_replace_at_end_leaves_the_trained_weights(make_trainer):
    model = tiny_resnet()
    last = Probe(after_optimizer_step=lambda state: weights_of(state.model))
    make_trainer(
        [get("ema", smoothing=0.5, replace_at_end=False)],
        model=model,
        batches=2,
        callbacks=[last],
    ).fit()
    _assert_same(weights_of(model), last.seen["after_optimizer_step"][-1])


def test_swa_running_average_and_batchnorm_recompute():
    model = nn.Linear(1, 1, bias=False)
    average = None
    for count, value in enumerate((1.0, 2.0, 6.0)):
        with torch.no_grad():
            model.weight.fill_(value)
        average = update_swa(average, count, model)
    assert average["weight"].item() == pytest.approx(3.0)
    bn_model = nn.Sequential(nn.BatchNorm1d(2))
    data = [torch.randn(64, 2) * 3 + 5 for _ in range(4)]
    assert recompute_batchnorm(bn_model, data, max_batches=4) == 4
    assert torch.allclose(bn_model[0].running_mean, torch.cat(data).mean(0), atol=0.05)


def test_swa_in_a_run_ends_with_the_average_of_the_chosen_steps_and_fresh_statistics(
    make_trainer, fashion_test
):
    model = tiny_resnet()
    steps = Probe(after_optimizer_step=lambda state: weights_of(state.model))
    make_trainer(
        [get("swa", start=0.3, update_interval=2, bn_batches=2)],
        model=model,
        batches=6,
        shuffle=False,
        callbacks=[steps],
    ).fit()
    seen = steps.seen["after_optimizer_step"]
    assert len(seen) == 6
    # batch b ends at progress b / 6: from 0.3 on, every 2nd batch: batches 2 and 4
    expected = {k: (seen[2][k] + seen[4][k]) / 2 for k in seen[2]}
    _assert_same(weights_of(model), expected)
    # the BatchNorm statistics were re-estimated with the averaged weights over 2 batches
    stem_conv, stem_norm = model.module.stem[0], model.module.stem[1]
    assert int(stem_norm.num_batches_tracked) == 2
    with torch.no_grad():
        features = [stem_conv(fashion_test.images[BATCH * b : BATCH * (b + 1)]) for b in (0, 1)]
    means = torch.stack([f.mean(dim=(0, 2, 3)) for f in features])
    variances = torch.stack([f.transpose(0, 1).flatten(1).var(dim=1) for f in features])
    assert torch.allclose(stem_norm.running_mean, means.mean(0), atol=1e-5)
    assert torch.allclose(stem_norm.running_var, variances.mean(0), rtol=1e-4)
