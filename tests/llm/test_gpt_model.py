"""GPT model: shapes, causality, RoPE/ALiBi against direct computation, sizes, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tessera.core.errors import ConfigError, UserError
from tessera.models.gpt import GPT, PRESETS, GPTConfig
from tessera.models.gpt.layers import alibi_slopes, apply_rope, rope_tables

STYLES = {
    "gpt2": {"position": "learned", "norm": "layernorm", "mlp": "gelu", "bias": True},
    "llama-gqa": {
        "position": "rope",
        "norm": "rmsnorm",
        "mlp": "swiglu",
        "bias": False,
        "n_kv_head": 2,
        "tie_embeddings": False,
    },
    "mpt-alibi": {"position": "alibi", "norm": "layernorm", "mlp": "gelu", "bias": False},
    "nope": {"position": "none", "norm": "rmsnorm", "mlp": "gelu", "bias": False},
}


def tiny(style: str, **overrides: object) -> GPTConfig:
    fields = {"vocab_size": 97, "max_seq_len": 48, "n_layer": 2, "n_head": 4, "d_model": 32}
    return GPTConfig(**{**fields, **STYLES[style], **overrides})


@pytest.mark.parametrize("style", sorted(STYLES))
def test_shapes_loss_and_parameter_count(style: str) -> None:
    torch.manual_seed(0)
    config = tiny(style)
    model = GPT(config)
    ids = torch.randint(0, 97, (3, 21))
    logits = model({"input_ids": ids})
    assert logits.shape == (3, 20, 97)
    loss = model.loss(logits, {"input_ids": ids})
    # Freshly initialised, the prediction is close to uniform over the vocabulary.
    assert abs(loss.item() - math.log(97)) < 0.3
    assert sum(p.numel() for p in model.parameters()) == config.num_parameters()
    assert model.num_tokens({"input_ids": ids}) == 60
    assert model.flops_per_batch({"input_ids": ids}) == 60 * config.flops_per_token(20)


@pytest.mark.parametrize("style", sorted(STYLES))
def test_future_tokens_cannot_change_earlier_logits(style: str) -> None:
    torch.manual_seed(1)
    model = GPT(tiny(style)).eval()
    ids = torch.randint(0, 97, (2, 30))
    changed = ids.clone()
    changed[:, 17:] = torch.randint(0, 97, (2, 13))
    with torch.no_grad():
        before, after = model.run(ids), model.run(changed)
    torch.testing.assert_close(before[:, :17], after[:, :17], rtol=0, atol=1e-6)
    assert (before[:, 17:] - after[:, 17:]).abs().max() > 1e-3


def test_rope_matches_complex_rotation() -> None:
    head_dim, theta = 8, 10000.0
    cos, sin = rope_tables(head_dim, 16, theta)
    x = torch.randn(1, 1, 16, head_dim, dtype=torch.float64).float()
    rotated = apply_rope(x, cos[None, None], sin[None, None])
    # Direct: pair feature i with i + d/2 as a complex number, multiply by e^{i·m·θ^(-2i/d)}.
    half = head_dim // 2
    z = torch.complex(x[..., :half].double(), x[..., half:].double())
    freqs = theta ** (-torch.arange(half, dtype=torch.float64) * 2 / head_dim)
    angle = torch.arange(16, dtype=torch.float64)[:, None] * freqs[None]
    expected = z * torch.polar(torch.ones_like(angle), angle)
    direct = torch.cat([expected.real, expected.imag], dim=-1).float()
    torch.testing.assert_close(rotated, direct, rtol=1e-5, atol=1e-5)
    # Relative: the score of positions (m, n) depends only on m - n.
    q, k = torch.randn(head_dim), torch.randn(head_dim)
    q_all = apply_rope(q.expand(1, 1, 16, head_dim), cos[None, None], sin[None, None])[0, 0]
    k_all = apply_rope(k.expand(1, 1, 16, head_dim), cos[None, None], sin[None, None])[0, 0]
    assert torch.allclose(q_all[5] @ k_all[2], q_all[12] @ k_all[9], atol=1e-5)


def test_alibi_attention_matches_direct_computation() -> None:
    torch.manual_seed(2)
    config = tiny("mpt-alibi", n_layer=1)
    model = GPT(config).eval()
    attention = model.blocks[0].attn
    length, heads, dim = 10, config.n_head, config.head_dim
    x = torch.randn(1, length, config.d_model)
    mask = model._attention_mask(length, 0, None, x.device)
    with torch.no_grad():
        ours = attention(x, None, mask, None)
        q, k, v = attention.qkv(x).split(config.d_model, dim=-1)
        q, k, v = (t.view(length, heads, dim).transpose(0, 1) for t in (q, k, v))
        slopes = alibi_slopes(heads)
        out = torch.empty(heads, length, dim)
        for h in range(heads):
            for i in range(length):
                scores = torch.tensor(
                    [q[h, i] @ k[h, j] / math.sqrt(dim) - slopes[h] * (i - j) for j in range(i + 1)]
                )
                out[h, i] = scores.softmax(0) @ v[h, : i + 1]
        direct = attention.proj(out.transpose(0, 1).reshape(1, length, config.d_model))
    torch.testing.assert_close(ours, direct, rtol=1e-4, atol=1e-5)


def test_alibi_slopes_follow_the_paper() -> None:
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    assert alibi_slopes(12).shape == (12,)  # non-power-of-two head counts interleave


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(3)
    plain = GPT(tiny("llama-gqa"))
    checkpointed = GPT(tiny("llama-gqa"))
    checkpointed.load_state_dict(plain.state_dict())
    from tessera.parallel.blocks import apply_activation_checkpointing

    assert apply_activation_checkpointing(checkpointed) == len(checkpointed.blocks)
    ids = torch.randint(0, 97, (2, 17))
    for model in (plain, checkpointed):
        model.loss(model({"input_ids": ids}), {"input_ids": ids}).backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


@pytest.mark.parametrize("style", ["gpt2", "llama-gqa"])
def test_autocast_residual_keeps_the_stream_in_bf16_and_trains_alike(style: str) -> None:
    torch.manual_seed(4)
    ids = torch.randint(0, 97, (2, 17))
    batch = {"input_ids": ids}
    models = {flag: GPT(tiny(style, autocast_residual=flag)) for flag in (False, True)}
    models[True].load_state_dict(models[False].state_dict())
    seen: dict[bool, list[torch.dtype]] = {False: [], True: []}
    losses = {}
    for flag, model in models.items():
        for block in model.blocks:
            block.register_forward_hook(lambda _m, _i, out, f=flag: seen[f].append(out.dtype))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses[flag] = model.loss(model(batch), batch)
        losses[flag].backward()
    assert seen == {False: [torch.float32] * 2, True: [torch.bfloat16] * 2}
    assert abs(losses[True].item() - losses[False].item()) < 0.02
    for (name, a), b in zip(models[False].named_parameters(), models[True].parameters()):
        assert b.grad is not None and b.grad.dtype == torch.float32, name
        cosine = F.cosine_similarity(a.grad.flatten(), b.grad.flatten(), dim=0)
        assert cosine > 0.99, name
    # without autocast the flag changes nothing: the stream stays float32
    seen[True].clear()
    models[True](batch)
    assert seen[True] == [torch.float32] * 2


def test_labels_mask_positions_out_of_the_loss() -> None:
    torch.manual_seed(4)
    model = GPT(tiny("gpt2"))
    ids = torch.randint(0, 97, (2, 12))
    labels = ids.clone()
    labels[:, :6] = -100
    logits = model({"input_ids": ids})
    expected = F.cross_entropy(logits[:, 5:].reshape(-1, 97), ids[:, 6:].reshape(-1))
    torch.testing.assert_close(model.loss(logits, {"input_ids": ids, "labels": labels}), expected)


def test_presets_reach_seven_billion_from_the_config_alone() -> None:
    sizes = {name: GPTConfig(preset=name, vocab_size=50304).num_parameters() for name in PRESETS}
    assert 120e6 < sizes["gpt-125m"] < 130e6
    assert 340e6 < sizes["gpt-350m"] < 360e6
    assert 1.0e9 < sizes["gpt-1b"] < 1.5e9
    llama = GPTConfig(preset="llama-7b")
    with torch.device("meta"):  # no memory: count the real modules
        model = GPT(llama)
    assert sum(p.numel() for p in model.parameters()) == llama.num_parameters()
    assert 6.5e9 < llama.num_parameters() < 7.0e9


def test_bad_configs_name_the_problem() -> None:
    with pytest.raises(UserError, match=r"d_model \(30\) must be divisible by n_head \(4\)"):
        GPTConfig(vocab_size=10, d_model=30, n_head=4)
    with pytest.raises(UserError, match=r"n_kv_head \(3\)"):
        GPTConfig(vocab_size=10, d_model=32, n_head=4, n_kv_head=3)
    with pytest.raises(UserError, match="did you mean 'gpt-125m'"):
        GPTConfig(preset="gpt-125")
    with pytest.raises(UserError, match=r"model\.postion: unknown option; did you mean 'position'"):
        GPTConfig.parse({"vocab_size": 10, "postion": "rope"})
    with pytest.raises(UserError, match=r"model\.position"):
        GPTConfig.parse({"vocab_size": 10, "position": "sinusoidal"})
    with pytest.raises(
        ConfigError, match=r"vocab_size \(50\) is smaller than the tokenizer's.*\(65\)"
    ):
        GPTConfig(vocab_size=50).with_vocab(65)


def test_too_long_and_out_of_vocabulary_inputs_are_refused() -> None:
    model = GPT(tiny("gpt2"))
    with pytest.raises(UserError, match=r"60 tokens is longer than the model's max_seq_len \(48\)"):
        model({"input_ids": torch.zeros(1, 61, dtype=torch.long)})
    with pytest.raises(UserError, match=r"token id 120 but the model's vocab_size is 97"):
        GPT(tiny("gpt2"))({"input_ids": torch.full((1, 8), 120)})
