"""Model-surgery methods: what they replace, what they keep, the optimizer afterwards, and what
the changed model does in a real run."""

from __future__ import annotations

import warnings

import pytest
import torch
from alg_support import BATCH, Probe, tiny_mlp, tiny_resnet, weights_of
from torch import nn

from tessera.algorithms import get
from tessera.algorithms.blurpool import BlurConv2d, BlurMaxPool2d, apply_blurpool, blur_2d
from tessera.algorithms.channels_last import apply_channels_last
from tessera.algorithms.common import NoEffectWarning
from tessera.algorithms.factorize import FactorizedConv2d, FactorizedLinear, apply_factorization
from tessera.algorithms.ghost_batchnorm import GhostBatchNorm, apply_ghost_batchnorm
from tessera.algorithms.layer_freezing import freeze_layers, frozen_fraction, trainable_layers
from tessera.algorithms.squeeze_excite import SqueezeExciteConv2d, apply_squeeze_excite
from tessera.algorithms.stochastic_depth import DropBranch, apply_stochastic_depth, drop_samples
from tessera.algorithms.weight_standardization import apply_weight_standardization
from tessera.core.errors import ConfigError


def _optimized(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def test_blurpool_replaces_strided_convs_and_pools_and_keeps_shapes(images):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, 1, 1),
        nn.Conv2d(16, 16, 3, 2, 1),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, 2, 1),
        nn.MaxPool2d(3, 2, 1),
    )
    x = images[0][:8]
    before = model(x)
    weights = [m.weight for m in model if isinstance(m, nn.Conv2d)]
    assert apply_blurpool(model) == 4
    assert isinstance(model[1], BlurConv2d) and isinstance(model[3], BlurConv2d)
    assert isinstance(model[2], BlurMaxPool2d) and isinstance(model[4], BlurMaxPool2d)
    assert isinstance(model[0], nn.Conv2d)  # stride 1: untouched
    after = model(x)
    assert after.shape == before.shape
    assert not torch.allclose(after, before)
    assert {id(w) for w in weights} <= {id(p) for p in model.parameters()}


def test_blur_is_a_normalised_low_pass_filter():
    constant = torch.full((1, 3, 8, 8), 2.0)
    assert torch.allclose(blur_2d(constant)[..., 1:-1, 1:-1], constant[..., 1:-1, 1:-1])
    checker = (torch.arange(8)[None, :] + torch.arange(8)[:, None]) % 2
    checker = checker.float().view(1, 1, 8, 8)
    assert blur_2d(checker)[..., 2:-2, 2:-2].std() < 0.1 * checker.std()


def test_blurpool_in_a_run_blurs_exactly_the_strided_convs_with_enough_channels(make_trainer):
    model = tiny_resnet()
    before = dict(model.named_modules())
    strided = {n for n, m in before.items() if isinstance(m, nn.Conv2d) and m.stride[0] > 1}
    wide = {n for n in strided if before[n].in_channels >= 16}
    assert len(strided) == 4 and len(wide) == 2
    make_trainer([get("blurpool", min_channels=16)], model=model, batches=1).fit()
    after = dict(model.named_modules())
    assert {n for n, m in after.items() if isinstance(m, BlurConv2d)} == wide
    assert all(after[n].conv is before[n] for n in wide)  # the same conv and weights
    assert all(type(after[n]) is nn.Conv2d for n in strided - wide)


def test_blurpool_on_a_model_without_strided_convs_warns_and_the_algorithm_refuses(make_trainer):
    with pytest.warns(NoEffectWarning, match="blurpool"):
        assert apply_blurpool(nn.Sequential(nn.Linear(4, 4))) == 0
    with pytest.raises(ConfigError, match="'blurpool' has nothing to act on"):
        make_trainer([get("blurpool")], model=tiny_mlp()).fit()


def test_squeeze_excite_adds_gates_and_their_parameters_to_the_optimizer(images):
    model = tiny_resnet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    count_before = sum(len(g["params"]) for g in optimizer.param_groups)
    replaced = apply_squeeze_excite(model, latent_channels=4, min_channels=16, optimizers=optimizer)
    assert replaced > 0
    blocks = [m for m in model.modules() if isinstance(m, SqueezeExciteConv2d)]
    assert all(b.conv.out_channels >= 16 for b in blocks)
    assert {id(p) for p in model.parameters()} == _optimized(optimizer)
    assert len(_optimized(optimizer)) == count_before + 4 * replaced
    assert model((images[0][:4], None)).shape == (4, 10)


def test_squeeze_excite_in_a_run_gates_the_wide_convs_and_trains_the_gates(make_trainer):
    model = tiny_resnet()
    wide = {
        n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.out_channels >= 16
    }
    probe = Probe(fit_start=lambda state: weights_of(state.model))
    trainer = make_trainer(
        [get("squeeze_excite", min_channels=16, latent_channels=4)],
        model=model,
        batches=2,
        callbacks=[probe],
    )
    trainer.fit()
    gated = {n: m for n, m in model.named_modules() if isinstance(m, SqueezeExciteConv2d)}
    assert set(gated) == wide and len(wide) == 6
    assert all(m.excite.reduce.out_channels == 4 for m in gated.values())
    assert _optimized(trainer.state.optimizers[0]) == {id(p) for p in model.parameters()}
    start, end = probe.seen["fit_start"][0], weights_of(model)
    gate_weights = [n for n in end if ".excite." in n]
    assert gate_weights and all(not torch.equal(start[n], end[n]) for n in gate_weights)


def test_factorize_is_exact_at_full_rank_and_swaps_optimizer_parameters():
    torch.manual_seed(0)
    linear = nn.Linear(96, 80)
    x = torch.randn(5, 96)
    full = FactorizedLinear(linear, 80)
    assert torch.allclose(full(x), linear(x), atol=1e-4)
    conv = nn.Conv2d(64, 64, 3, 2, 1)
    xc = torch.randn(2, 64, 9, 9)
    assert torch.allclose(FactorizedConv2d(conv, 64)(xc), conv(xc), atol=1e-4)

    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    optimizer = torch.optim.Adam(model.parameters())
    old_weight = model[0].weight
    assert (
        apply_factorization(model, latent_features=0.25, min_features=64, optimizers=optimizer) == 1
    )
    assert isinstance(model[0], FactorizedLinear) and model[0].first.out_features == 64
    assert id(old_weight) not in _optimized(optimizer)
    assert {id(p) for p in model.parameters()} == _optimized(optimizer)
    assert sum(p.numel() for p in model.parameters()) < 256 * 256 + 256 + 2570


def _truncation_error(weight: torch.Tensor, rank: int) -> float:
    """||W - W_r|| for the best rank-r approximation W_r (Eckart-Young): the dropped sigmas."""
    singular = torch.linalg.svdvals(weight.detach().flatten(1).double())
    return float(singular[rank:].pow(2).sum().sqrt())


def test_factorize_in_a_run_starts_from_the_best_low_rank_approximation(make_trainer):
    model = tiny_resnet()
    original = {
        n: m.weight.detach().clone()
        for n, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    }
    size_before = sum(p.numel() for p in model.parameters())

    def products(state):
        out = {}
        for name, module in state.model.named_modules():
            if isinstance(module, (FactorizedLinear, FactorizedConv2d)):
                first = module.first.weight.detach().flatten(1).double()
                second = module.second.weight.detach().flatten(1).double()
                out[name] = (second @ first, first.shape[0])
        return out

    probe = Probe(fit_start=products)
    trainer = make_trainer(
        [get("factorize", min_features=8, latent_features=0.25)],
        model=model,
        batches=1,
        callbacks=[probe],
    )
    trainer.fit()
    factorized = probe.seen["fit_start"][0]
    # every conv but the 1-channel stem, and the classifier
    assert len(factorized) == 9 and "module.stem.0" not in factorized
    for name, (product, rank) in factorized.items():
        weight = original[name]
        assert rank == int(0.25 * min(weight.shape[0], weight.shape[1]))
        error = float((weight.flatten(1).double() - product).norm())
        assert error == pytest.approx(_truncation_error(weight, rank), rel=1e-4, abs=1e-6)
    assert _optimized(trainer.state.optimizers[0]) == {id(p) for p in model.parameters()}
    assert sum(p.numel() for p in model.parameters()) < size_before


def test_ghost_batchnorm_normalises_each_chunk_with_its_own_statistics():
    bn = nn.BatchNorm1d(3, affine=False)
    ghost = nn.Sequential(bn)
    assert apply_ghost_batchnorm(ghost, ghost_batch_size=4) == 1
    assert isinstance(ghost[0], GhostBatchNorm) and ghost[0].batchnorm is bn
    x = torch.cat([torch.randn(4, 3), torch.randn(4, 3) * 5 + 10, torch.randn(4, 3) - 3])
    out = ghost(x)
    expected_mean, expected_var = torch.zeros(3), torch.ones(3)
    for chunk, normalised in zip(x.split(4), out.split(4)):
        assert torch.allclose(normalised.mean(0), torch.zeros(3), atol=1e-5)
        expected_mean = 0.9 * expected_mean + 0.1 * chunk.mean(0)
        expected_var = 0.9 * expected_var + 0.1 * chunk.var(0, unbiased=True)
    assert int(bn.num_batches_tracked) == 3  # one update of the statistics per ghost batch
    assert torch.allclose(bn.running_mean, expected_mean, atol=1e-6)
    assert torch.allclose(bn.running_var, expected_var, atol=1e-5)
    ghost.eval()
    assert torch.allclose(ghost(x), bn(x))


def test_ghost_batchnorm_in_a_run_splits_every_batch_into_ghost_batches(make_trainer):
    model = tiny_resnet()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    make_trainer([get("ghost_batchnorm", ghost_batch_size=4)], model=model, batches=2).fit()
    wrapped = [m for m in model.modules() if isinstance(m, GhostBatchNorm)]
    assert [m.batchnorm for m in wrapped] == norms
    # 2 batches of 16 in 4 ghost batches each: 8 statistics updates per BatchNorm (not 2)
    assert [int(n.num_batches_tracked) for n in norms] == [2 * BATCH // 4] * len(norms)


def test_weight_standardization_keeps_the_parameter_and_standardises_the_weight():
    conv = nn.Conv2d(3, 8, 3)
    raw = conv.weight
    model = nn.Sequential(conv)
    assert apply_weight_standardization(model) == 1
    assert conv.parametrizations.weight.original is raw
    weight = conv.weight.detach().flatten(1)
    assert torch.allclose(weight.mean(1), torch.zeros(8), atol=1e-5)
    assert torch.allclose(weight.std(1, unbiased=False), torch.ones(8), atol=1e-3)


def test_weight_standardization_in_a_run_trains_the_raw_weights_of_all_but_the_last(make_trainer):
    model = tiny_resnet()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    raw = [c.weight for c in convs]
    trainer = make_trainer(
        [get("weight_standardization", skip_last_layers=1)], model=model, batches=2
    )
    trainer.fit()
    standardised = [c for c in convs if hasattr(c, "parametrizations")]
    assert standardised == convs[:-1]
    assert [c.parametrizations.weight.original for c in standardised] == raw[:-1]
    assert _optimized(trainer.state.optimizers[0]) == {id(p) for p in model.parameters()}
    for conv in standardised:
        weight = conv.weight.detach().flatten(1)
        assert torch.allclose(weight.mean(1), torch.zeros(len(weight)), atol=1e-5)
        assert torch.allclose(weight.std(1, unbiased=False), torch.ones(len(weight)), atol=1e-3)
    assert convs[-1].weight is raw[-1]


def test_stochastic_depth_drops_branches_in_training_only(images):
    model = tiny_resnet()
    model.eval()
    x = (images[0][:16], None)
    reference = model(x)
    assert apply_stochastic_depth(model, drop_rate=0.5, drop_distribution="uniform") == 3
    wrapped = [m for m in model.modules() if isinstance(m, DropBranch)]
    assert len(wrapped) == 3 and all(w.drop_rate == 0.5 for w in wrapped)
    assert torch.allclose(model(x), reference)  # eval: the full network
    branch = torch.ones(2000, 4, 2, 2)
    out = drop_samples(branch, 0.5, training=True)
    zero = (out.flatten(1).abs().sum(1) == 0).float().mean()
    assert 0.45 < zero < 0.55 and torch.allclose(out.mean(), torch.tensor(1.0), atol=0.1)
    with pytest.warns(NoEffectWarning):
        apply_stochastic_depth(nn.Sequential(nn.Linear(2, 2)))


def test_linear_drop_rate_grows_with_depth():
    model = tiny_resnet()
    apply_stochastic_depth(model, drop_rate=0.3, drop_distribution="linear")
    rates = [m.drop_rate for m in model.modules() if isinstance(m, DropBranch)]
    assert rates == pytest.approx([0.1, 0.2, 0.3])


def test_stochastic_depth_in_a_run_drops_whole_residual_branches_per_sample(make_trainer):
    model = tiny_resnet()
    branch_norms = [model.module.stages[i].bn2 for i in range(3)]
    seen: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {i: [] for i in range(3)}

    def watch(state):
        for index, block in enumerate(state.model.module.stages):
            drop = block.bn2
            assert isinstance(drop, DropBranch) and drop.layer is branch_norms[index]
            inner: list[torch.Tensor] = []
            drop.layer.register_forward_hook(lambda m, i, out, inner=inner: inner.append(out))
            drop.register_forward_hook(
                lambda m, i, out, index=index, inner=inner: seen[index].append(
                    (inner[-1].detach(), out.detach())
                )
            )

    trainer = make_trainer(
        [get("stochastic_depth", drop_rate=0.5, drop_distribution="uniform")],
        model=model,
        batches=4,
        callbacks=[Probe(fit_start=watch)],
    )
    trainer.fit()
    for index in range(3):
        outputs = seen[index]
        assert len(outputs) == 4
        dropped = 0
        for branch, out in outputs:
            for sample_branch, sample_out in zip(branch, out):
                if torch.count_nonzero(sample_out) == 0:
                    dropped += 1
                else:  # kept branches are scaled by 1 / (1 - p)
                    assert torch.allclose(sample_out, sample_branch / 0.5, atol=1e-6)
        assert 16 <= dropped <= 48, f"block {index}: {dropped} of 64 branches dropped"


def test_channels_last_keeps_parameters_and_outputs(images):
    model = tiny_resnet()
    model.eval()
    x = (images[0][:4], None)
    before = model(x)
    params = list(model.parameters())
    assert apply_channels_last(model) > 0
    assert list(model.parameters()) == params
    conv = model.module.stem[0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(model(x), before, atol=1e-5)


def test_layer_freezing_freezes_the_first_layers():
    model = tiny_mlp()
    assert freeze_layers(model, 0.5) == 1
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert not layers[0].weight.requires_grad and layers[1].weight.requires_grad
    assert frozen_fraction(0.4, 0.5, 1.0) == 0.0
    assert frozen_fraction(0.75, 0.5, 1.0) == pytest.approx(0.5)
    assert frozen_fraction(1.0, 0.5, 0.8) == pytest.approx(0.8)


def test_layer_freezing_in_a_run_freezes_the_scheduled_layers_which_then_stop_moving(
    make_trainer,
):
    model = tiny_resnet()
    layers = trainable_layers(model)
    assert len(layers) == 19

    def frozen_and_weights(state):
        frozen = [not p.requires_grad for layer in layers for p in layer.parameters()]
        return frozen, weights_of(state.model)

    probe = Probe(epoch_end=frozen_and_weights)
    make_trainer(
        [get("layer_freezing", freeze_start=0.25, freeze_level=1.0)],
        model=model,
        batches=2,
        max_duration="2ep",
        callbacks=[probe],
    ).fit()
    (half, at_half), (end, at_end) = probe.seen["epoch_end"]
    # after epoch 1 of 2 (progress 0.5) the frozen fraction is (0.5 - 0.25) / (1 - 0.25) = 1/3
    # of the 19 layers: the first 6; at the end (progress 1) all 19
    per_layer = [len(list(layer.parameters())) for layer in layers]
    first_six = sum(per_layer[:6])
    assert half == [True] * first_six + [False] * (len(half) - first_six)
    assert all(end)
    names = {id(p): n for n, p in model.named_parameters()}
    frozen_names = [names[id(p)] for layer in layers[:6] for p in layer.parameters()]
    moving_names = [names[id(p)] for layer in layers[6:] for p in layer.parameters()]
    assert all(torch.equal(at_half[n], at_end[n]) for n in frozen_names)
    assert all(not torch.equal(at_half[n], at_end[n]) for n in moving_names)


def test_no_effect_warnings_are_warnings_not_silence():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_ghost_batchnorm(nn.Sequential(nn.Linear(2, 2)))
    assert any(issubclass(w.category, NoEffectWarning) for w in caught)
