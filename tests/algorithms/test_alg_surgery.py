"""Model-surgery methods: what they replace, what they keep, and the optimizer afterwards."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import tiny_mlp, tiny_resnet
from torch import nn

from tessera.algorithms.blurpool import BlurConv2d, BlurMaxPool2d, apply_blurpool, blur_2d
from tessera.algorithms.channels_last import apply_channels_last
from tessera.algorithms.common import NoEffectWarning
from tessera.algorithms.factorize import FactorizedConv2d, FactorizedLinear, apply_factorization
from tessera.algorithms.ghost_batchnorm import GhostBatchNorm, apply_ghost_batchnorm
from tessera.algorithms.layer_freezing import freeze_layers, frozen_fraction
from tessera.algorithms.low_precision_norm import LowPrecisionNorm, apply_low_precision_norm
from tessera.algorithms.squeeze_excite import SqueezeExciteConv2d, apply_squeeze_excite
from tessera.algorithms.stochastic_depth import DropBranch, apply_stochastic_depth
from tessera.algorithms.weight_standardization import apply_weight_standardization
from tessera.core.errors import ConfigError


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


def test_blurpool_on_a_model_without_strided_convs_warns_and_the_algorithm_refuses(make_trainer):
    with pytest.warns(NoEffectWarning, match="blurpool"):
        assert apply_blurpool(nn.Sequential(nn.Linear(4, 4))) == 0
    from tessera.algorithms import get

    with pytest.raises(ConfigError, match="'blurpool' has nothing to act on"):
        make_trainer([get("blurpool")], model=tiny_mlp())


def test_squeeze_excite_adds_gates_and_their_parameters_to_the_optimizer(images):
    model = tiny_resnet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    count_before = sum(len(g["params"]) for g in optimizer.param_groups)
    replaced = apply_squeeze_excite(model, latent_channels=4, min_channels=16, optimizers=optimizer)
    assert replaced > 0
    blocks = [m for m in model.modules() if isinstance(m, SqueezeExciteConv2d)]
    assert all(b.conv.out_channels >= 16 for b in blocks)
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert {id(p) for p in model.parameters()} == in_optimizer
    assert len(in_optimizer) == count_before + 4 * replaced
    assert model((images[0][:4], None)).shape == (4, 10)


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
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert id(old_weight) not in in_optimizer
    assert {id(p) for p in model.parameters()} == in_optimizer
    assert sum(p.numel() for p in model.parameters()) < 256 * 256 + 256 + 2570


def test_ghost_batchnorm_normalises_each_chunk_with_its_own_statistics():
    bn = nn.BatchNorm1d(3, affine=False)
    ghost = nn.Sequential(bn)
    assert apply_ghost_batchnorm(ghost, ghost_batch_size=4) == 1
    assert isinstance(ghost[0], GhostBatchNorm) and ghost[0].batchnorm is bn
    x = torch.cat([torch.randn(4, 3), torch.randn(4, 3) * 5 + 10])
    out = ghost(x)
    for chunk in out.split(4):
        assert torch.allclose(chunk.mean(0), torch.zeros(3), atol=1e-5)
    ghost.eval()
    assert torch.allclose(ghost(x), bn(x))


def test_weight_standardization_keeps_the_parameter_and_standardises_the_weight():
    conv = nn.Conv2d(3, 8, 3)
    raw = conv.weight
    model = nn.Sequential(conv)
    assert apply_weight_standardization(model) == 1
    assert conv.parametrizations.weight.original is raw
    weight = conv.weight.detach().flatten(1)
    assert torch.allclose(weight.mean(1), torch.zeros(8), atol=1e-5)
    assert torch.allclose(weight.std(1, unbiased=False), torch.ones(8), atol=1e-3)


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
    from tessera.algorithms.stochastic_depth import drop_samples

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


def test_low_precision_norm_runs_norms_in_bf16_under_autocast_only():
    norm = nn.LayerNorm(8)
    model = nn.Sequential(norm)
    assert apply_low_precision_norm(model) == 1
    assert isinstance(model[0], LowPrecisionNorm) and model[0].norm is norm
    x = torch.randn(4, 8)
    assert model(x).dtype == torch.float32
    assert torch.allclose(model(x), norm(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x).dtype == torch.bfloat16
        assert norm(x).dtype == torch.float32  # what autocast does without the method
    with pytest.warns(NoEffectWarning):
        apply_low_precision_norm(nn.Sequential(nn.Linear(2, 2)))


def test_layer_freezing_freezes_the_first_layers():
    model = tiny_mlp()
    assert freeze_layers(model, 0.5) == 1
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert not layers[0].weight.requires_grad and layers[1].weight.requires_grad
    assert frozen_fraction(0.4, 0.5, 1.0) == 0.0
    assert frozen_fraction(0.75, 0.5, 1.0) == pytest.approx(0.5)
    assert frozen_fraction(1.0, 0.5, 0.8) == pytest.approx(0.8)


def test_no_effect_warnings_are_warnings_not_silence():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_ghost_batchnorm(nn.Sequential(nn.Linear(2, 2)))
    assert any(issubclass(w.category, NoEffectWarning) for w in caught)
