"""LowPrecisionNorm: every kind of norm computes in bf16 under autocast, unchanged otherwise,
with the same parameters, names and statistics; in a run, the norms' outputs are bf16."""

from __future__ import annotations

import pytest
import torch
from alg_support import Probe, tiny_resnet
from torch import nn

from tessera.algorithms import get
from tessera.algorithms.common import NoEffectWarning
from tessera.algorithms.low_precision_norm import apply_low_precision_norm
from tessera.core.errors import ConfigError
from tessera.models.gpt.layers import RMSNorm

NORMS = {
    "layernorm": (lambda: nn.LayerNorm(8), (4, 6, 8)),
    "rmsnorm": (lambda: RMSNorm(8, 1e-6), (4, 6, 8)),
    "torch_rmsnorm": (lambda: nn.RMSNorm(8, eps=1e-6), (4, 6, 8)),
    "groupnorm": (lambda: nn.GroupNorm(2, 8), (4, 8, 5, 5)),
    "batchnorm": (lambda: nn.BatchNorm2d(8), (4, 8, 5, 5)),
}


@pytest.mark.parametrize("kind", list(NORMS))
def test_each_norm_computes_in_bf16_under_autocast_and_is_unchanged_outside(kind):
    make, shape = NORMS[kind]
    torch.manual_seed(0)
    norm, reference = make(), make()
    with torch.no_grad():
        for p, q in zip(norm.parameters(), reference.parameters()):
            p.uniform_(0.5, 1.5)
            q.copy_(p)
    model = nn.Sequential(norm)
    keys, params = list(model.state_dict()), list(model.parameters())
    assert apply_low_precision_norm(model) == 1
    assert model[0] is norm and isinstance(norm, type(reference))  # swapped in place
    assert list(model.state_dict()) == keys and list(model.parameters()) == params
    x = torch.randn(shape) * 3 + 1
    assert torch.equal(model(x), reference(x))  # no autocast: exactly as before
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        plain = reference(x)
    assert out.dtype == torch.bfloat16
    assert plain.dtype == torch.float32  # what the norm does under autocast without the method
    assert torch.allclose(out.float(), plain, atol=0.1, rtol=0.05)
    assert not torch.equal(out.float(), plain)  # computed differently, not just cast at the end
    if kind == "batchnorm":  # the statistics are updated as before, and stay fp32
        assert int(norm.num_batches_tracked) == int(reference.num_batches_tracked) == 2
        assert norm.running_mean.dtype == torch.float32
        assert torch.allclose(norm.running_mean, reference.running_mean, atol=0.02)
        assert torch.allclose(norm.running_var, reference.running_var, rtol=0.02)


def test_kinds_choose_which_norms_change_and_other_classes_are_left_alone():
    class OwnNorm(nn.LayerNorm):
        def forward(self, x):
            return super().forward(x) * 2

    model = nn.Sequential(nn.LayerNorm(4), nn.BatchNorm1d(4), OwnNorm(4))
    assert apply_low_precision_norm(model, kinds=["batchnorm"]) == 1
    x = torch.randn(3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model[0](x).dtype == torch.float32  # not a chosen kind
        assert model[1](x).dtype == torch.bfloat16
        assert model[2](x).dtype == torch.float32  # a subclass with its own forward
    with pytest.warns(NoEffectWarning):
        assert apply_low_precision_norm(nn.Sequential(nn.Linear(2, 2))) == 0
    with pytest.raises(ConfigError, match="kinds"):
        apply_low_precision_norm(model, kinds=["instancenorm"])


def test_in_a_bf16_run_every_batchnorm_of_a_resnet_outputs_bf16(make_trainer):
    model = tiny_resnet()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    dtypes: list[torch.dtype] = []

    def watch(state):
        for norm in norms:
            norm.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))

    make_trainer(
        [get("low_precision_norm")],
        model=model,
        batches=1,
        precision="amp_bf16",
        callbacks=[Probe(fit_start=watch)],
    ).fit()
    assert dtypes == [torch.bfloat16] * len(norms)
    assert all(type(n).__name__ == "LowPrecisionBatchNorm2d" for n in norms)


def test_an_fp32_run_is_refused_because_the_method_would_change_nothing(make_trainer):
    with pytest.raises(ConfigError, match="only act under 'amp_bf16' or 'amp_fp16'"):
        make_trainer([get("low_precision_norm")], batches=1).fit()
