"""Language-model methods on a tiny Tessera GPT fed real Shakespeare characters."""

from __future__ import annotations

import math

import pytest
import torch
from alg_support import DATA, Probe, tiny_resnet
from torch import nn

import tessera.algorithms as algorithms
from tessera.algorithms.alibi import apply_alibi
from tessera.algorithms.common import NoEffectWarning
from tessera.algorithms.gated_linear_units import apply_gated_linear_units
from tessera.algorithms.low_precision_norm import apply_low_precision_norm
from tessera.algorithms.sequence_length_warmup import (
    reshape_sequences,
    truncate_sequences,
    warmup_length,
)
from tessera.core.errors import ConfigError
from tessera.models.gpt.config import GPTConfig
from tessera.models.gpt.model import GPT

SHAKESPEARE = DATA.parent / "tinyshakespeare" / "input.txt"


@pytest.fixture(scope="module")
def shakespeare_ids() -> torch.Tensor:
    text = SHAKESPEARE.read_text()[:20000]
    vocabulary = {c: i for i, c in enumerate(sorted(set(SHAKESPEARE.read_text())))}
    return torch.tensor([vocabulary[c] for c in text])


def sequences(ids: torch.Tensor, count: int, length: int = 33) -> torch.Tensor:
    return ids[: count * length].view(count, length)


def tiny_gpt(**overrides) -> GPT:
    torch.manual_seed(0)
    options = {"vocab_size": 65, "max_seq_len": 32, "n_layer": 2, "n_head": 2, "d_model": 32}
    return GPT(GPTConfig(**{**options, **overrides}))


def test_sequence_length_schedule_truncate_and_reshape(shakespeare_ids):
    assert warmup_length(0.0, 8, 32, 0.5, 8) == 8
    assert warmup_length(0.25, 8, 32, 0.5, 8) == 16
    assert warmup_length(0.6, 8, 32, 0.5, 8) == 32
    batch = {"input_ids": sequences(shakespeare_ids, 4)}
    short = truncate_sequences(batch, 8)
    assert short["input_ids"].shape == (4, 9)
    assert torch.equal(short["input_ids"], batch["input_ids"][:, :9])
    windows = reshape_sequences(batch, 8)["input_ids"]
    assert windows.shape == (16, 9)
    # every predicted token of the original sequences is predicted once in the windows
    assert torch.equal(windows[:, 1:].reshape(4, 32), batch["input_ids"][:, 1:])
    with pytest.raises(ConfigError, match="input_ids"):
        truncate_sequences((torch.zeros(2, 3), torch.zeros(2)), 2)  # type: ignore[arg-type]


def test_alibi_removes_position_embeddings_from_model_and_optimizer(shakespeare_ids):
    model = tiny_gpt()
    optimizer = torch.optim.AdamW(model.parameters())
    position = model.pos_embed.weight
    batch = {"input_ids": sequences(shakespeare_ids, 2)}
    before = model(batch)
    assert apply_alibi(model, max_seq_len=64, optimizers=[optimizer]) == 2
    assert not hasattr(model, "pos_embed") and model.config.position == "alibi"
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert id(position) not in in_optimizer
    assert in_optimizer == {id(p) for p in model.parameters()}
    after = model(batch)
    assert after.shape == before.shape and not torch.allclose(after, before)
    longer = {"input_ids": sequences(shakespeare_ids, 1, 65)}  # past the original 32 tokens
    assert model(longer).shape == (1, 64, 65)
    assert model.export_config()["model"]["position"] == "alibi"


def test_alibi_on_a_model_without_attention_is_an_error(make_trainer):
    with pytest.raises(ConfigError, match="attention"):
        apply_alibi(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ConfigError, match="'alibi' needs a transformer"):
        make_trainer([algorithms.get("alibi")], model=tiny_resnet()).fit()


def test_gated_linear_units_keep_the_parameter_count_and_update_the_optimizer(shakespeare_ids):
    model = tiny_gpt()
    optimizer = torch.optim.AdamW(model.parameters())
    count = sum(p.numel() for p in model.parameters())
    assert apply_gated_linear_units(model, optimizers=[optimizer]) == 2
    assert model.config.mlp == "swiglu" and model.config.d_ff == 88
    assert all(block.mlp.swiglu for block in model.blocks)
    new_count = sum(p.numel() for p in model.parameters())
    assert abs(new_count - count) / count < 0.03
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in model.parameters()}
    assert model({"input_ids": sequences(shakespeare_ids, 2)}).shape == (2, 32, 65)
    with pytest.warns(NoEffectWarning):
        apply_gated_linear_units(model)


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_low_precision_norm_keeps_a_gpts_names_and_computes_in_bf16(norm, shakespeare_ids):
    model = tiny_gpt(norm=norm)
    keys = list(model.state_dict())
    assert apply_low_precision_norm(model, kinds=[norm]) == 5  # 2 per block + the final norm
    assert list(model.state_dict()) == keys
    x = torch.randn(2, 4, 32)
    assert model.norm(x).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.norm(x)
    assert out.dtype == torch.bfloat16
    reference = model.norm(x)
    assert torch.allclose(out.float(), reference, atol=0.05)


def test_language_model_methods_together_in_a_trainer_run(shakespeare_ids):
    from tessera import Trainer

    model = tiny_gpt()
    keys = list(model.state_dict())
    position = model.pos_embed.weight
    data = [{"input_ids": sequences(shakespeare_ids[i * 300 :], 8)} for i in range(4)]
    norm_dtypes: list[torch.dtype] = []

    def watch(state):
        state.model.norm.register_forward_hook(lambda m, i, out: norm_dtypes.append(out.dtype))

    probe = Probe(before_forward=lambda s: s.batch["input_ids"].shape[1], fit_start=watch)
    methods = algorithms.build_algorithms(
        {
            "sequence_length_warmup": {"min_seq_length": 8, "duration": 0.5, "step_size": 8},
            "alibi": {},
            "gated_linear_units": {},
            "low_precision_norm": {},
        }
    )
    optimizer = torch.optim.AdamW(model.parameters(), 3e-3)
    trainer = Trainer(
        model,
        data,
        "4ba",
        optimizers=optimizer,
        schedulers=[],
        algorithms=methods,
        callbacks=[probe],
        loggers=[],
        run_dir=None,
        precision="amp_bf16",
        device="cpu",
    )
    trainer.fit()
    # sequence_length_warmup: 8 + 24 * p / 0.5 predicted tokens at progress p (in steps of 8)
    assert probe.seen["before_forward"] == [9, 17, 33, 33]
    # alibi: no position embedding, in the model or the optimizer
    assert model.config.position == "alibi" and not hasattr(model, "pos_embed")
    optimized = {id(p) for g in trainer.state.optimizers[0].param_groups for p in g["params"]}
    assert id(position) not in optimized and optimized == {id(p) for p in model.parameters()}
    # gated_linear_units: every block's MLP is SwiGLU with 2/3 of the hidden width
    assert model.config.mlp == "swiglu" and all(block.mlp.swiglu for block in model.blocks)
    # low_precision_norm: all 5 norms compute in bf16 and keep their names
    norms = [n for n, m in model.named_modules() if type(m).__name__ == "LowPrecisionLayerNorm"]
    assert norms == ["blocks.0.norm1", "blocks.0.norm2", "blocks.1.norm1", "blocks.1.norm2", "norm"]
    assert norm_dtypes == [torch.bfloat16] * 4
    assert [k for k in model.state_dict() if "norm" in k] == [k for k in keys if "norm" in k]
    assert math.isfinite(float(trainer.state.batch_loss))
