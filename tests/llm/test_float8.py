"""FP8 training (torchao float8): refused with the reason where there are no FP8 tensor cores;
with torchao installed, the eligible linear layers are converted and the output layer is not."""

from __future__ import annotations

import pytest
import torch

from tessera.algorithms.float8 import Float8, convert_to_float8, fp8_unavailable_reason
from tessera.core.errors import ConfigError
from tessera.models.gpt import GPT, GPTConfig
from tessera.trainer import Trainer


def shape(d_model: int = 256) -> GPTConfig:
    return GPTConfig(
        vocab_size=512,
        max_seq_len=32,
        n_layer=2,
        n_head=4,
        d_model=d_model,
        position="rope",
        norm="rmsnorm",
        mlp="swiglu",
        bias=False,
        tie_embeddings=False,
    )


def test_a_run_without_fp8_hardware_is_refused_with_the_reason(tmp_path) -> None:
    assert "compute capability 8.9" in fp8_unavailable_reason("cpu")
    model = GPT(shape())
    data = [{"input_ids": torch.randint(0, 512, (2, 33))}]
    with pytest.raises(ConfigError, match=r"algorithm 'float8': the run's device is cpu.*8\.9"):
        Trainer(model, data, "1ba", algorithms=[Float8()], run_dir=None, device="cpu")


def test_eligible_linear_layers_are_converted() -> None:
    pytest.importorskip("torchao.float8")
    model = GPT(shape())
    converted = convert_to_float8(model)
    assert converted == [
        f"blocks.{i}.{n}" for i in range(2) for n in ("attn.qkv", "attn.proj", "mlp.up", "mlp.down")
    ]
    assert type(model.blocks[0].mlp.up).__name__ == "Float8Linear"
    assert type(model.lm_head) is torch.nn.Linear  # kept in high precision
    small = GPT(shape(d_model=64))
    assert convert_to_float8(small) == []  # too small to gain: left alone
    with pytest.raises(ConfigError, match="recipe='fastest' is not accepted"):
        convert_to_float8(small, recipe="fastest")
