"""`parallelize`: activation checkpointing, then compile, then the data-parallel wrapper, in one
documented order; compile per block keeps the model's outputs; bad settings fail at load."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tessera.core.component import build_config
from tessera.core.errors import ConfigError
from tessera.models.gpt import GPT, GPTConfig
from tessera.parallel.blocks import repeated_blocks
from tessera.parallel.compile import compile_model, is_compiled
from tessera.parallel.config import CompileConfig
from tessera.parallel.parallelize import parallelize


def tiny_gpt() -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=50, max_seq_len=32, n_layer=2, n_head=2, d_model=16)
    return GPT(config)


def test_compile_per_block_compiles_each_block_and_keeps_the_logits():
    model = tiny_gpt().eval()
    ids = torch.randint(0, 50, (2, 16))
    expected = model({"input_ids": ids})
    compile_model(model, CompileConfig(backend="aot_eager", scope="blocks"))
    assert repeated_blocks(model) == list(model.blocks)
    assert getattr(model, "_compiled_call_impl", None) is None  # only the blocks
    assert is_compiled(model)
    torch.testing.assert_close(model({"input_ids": ids}), expected, rtol=1e-5, atol=1e-5)


def test_compile_per_block_needs_repeated_blocks_and_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="no repeated blocks in Sequential"):
        compile_model(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), CompileConfig(scope="blocks"))
    with pytest.raises(ConfigError) as info:
        build_config(CompileConfig, {"scope": "layers", "backend": "inductr"}, "compile")
    assert "compile.scope: 'layers' is not accepted" in str(info.value)
    assert "did you mean 'inductor'" in str(info.value)


def test_checkpointing_comes_before_compile_and_both_keep_the_gradients():
    reference = tiny_gpt()
    model = tiny_gpt()
    ids = torch.randint(0, 50, (2, 16))
    result = parallelize(
        model,
        activation_checkpointing=True,
        compile=CompileConfig(backend="aot_eager", scope="blocks"),
    )
    assert result.model is model and result.strategy is None  # one process: no wrapper
    # each block is compiled around the checkpointed forward (the order parallelize documents)
    for block in model.blocks:
        assert block.forward.__name__ == "checkpointed"
        assert getattr(block, "_compiled_call_impl", None) is not None
    for network in (reference, model):
        network.loss(network({"input_ids": ids}), {"input_ids": ids}).backward()
    for (name, a), b in zip(reference.named_parameters(), model.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-6, msg=name)
