"""Generation: the KV cache reproduces full recomputation; sampling options; batches; stops."""

from __future__ import annotations

import pytest
import torch

from tessera.core.errors import UserError
from tessera.models.gpt import GPT, GPTConfig
from tessera.serve.generate import Sampling, choose_next, generate_ids

STYLES = [
    {"position": "learned"},
    {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu", "n_kv_head": 2, "bias": False},
    {"position": "alibi", "bias": False},
]


def model_for(style: dict, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=50, max_seq_len=24, n_layer=2, n_head=4, d_model=32, **style)
    model = GPT(config).eval()
    # Larger weights than the init make the logits far from uniform, so errors would show.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    return model


@pytest.mark.parametrize("style", STYLES, ids=lambda s: s["position"])
def test_cached_logits_equal_full_recomputation(style: dict) -> None:
    model = model_for(style)
    ids = torch.randint(0, 50, (3, 24))
    with torch.no_grad():
        full = model.run(ids)
        cache = model.new_cache(3)
        pieces = [model.run(ids[:, :9], cache=cache)]
        pieces += [model.run(ids[:, i : i + 1], cache=cache) for i in range(9, 24)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("style", STYLES, ids=lambda s: s["position"])
def test_greedy_generation_with_and_without_cache_is_identical(style: dict) -> None:
    model = model_for(style, seed=1)
    prompts = [[1, 2, 3, 4], [7, 8], [9, 10, 11, 12, 13, 14]]
    # 30 new tokens run past max_seq_len (24): both modes then slide a window.
    sampling = Sampling(max_new_tokens=30, temperature=0.0)
    cached = generate_ids(model, prompts, sampling, use_cache=True)
    recomputed = generate_ids(model, prompts, sampling, use_cache=False)
    assert cached == recomputed
    assert all(len(row) == 30 for row in cached)


def test_a_padded_batch_decodes_each_row_as_if_alone() -> None:
    model = model_for(STYLES[1], seed=2)
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15]]
    sampling = Sampling(max_new_tokens=12, temperature=0.0)
    together = generate_ids(model, prompts, sampling)
    alone = [generate_ids(model, [prompt], sampling)[0] for prompt in prompts]
    assert together == alone


def test_sampling_options() -> None:
    logits = torch.tensor([[0.0, 3.0, 2.9, -5.0]])
    generator = torch.Generator().manual_seed(0)
    top1 = Sampling(temperature=1.0, top_k=1)
    assert {int(choose_next(logits, top1, generator)) for _ in range(20)} == {1}
    top2 = Sampling(temperature=1.0, top_k=2)
    assert {int(choose_next(logits, top2, generator)) for _ in range(200)} == {1, 2}
    # Token 1 holds ~49% of the mass, so top_p=0.4 keeps it alone; 0.6 adds token 2.
    assert {int(choose_next(logits, Sampling(top_p=0.4), generator)) for _ in range(50)} == {1}
    assert {int(choose_next(logits, Sampling(top_p=0.6), generator)) for _ in range(200)} == {1, 2}
    seeded = Sampling(max_new_tokens=10, temperature=1.0, seed=3)
    model = model_for(STYLES[0])
    assert generate_ids(model, [[1, 2]], seeded) == generate_ids(model, [[1, 2]], seeded)


def test_eos_and_stop_end_rows_early() -> None:
    model = model_for(STYLES[0], seed=4)
    sampling = Sampling(max_new_tokens=20, temperature=0.0)
    free = generate_ids(model, [[1, 2, 3]], sampling)[0]
    eos = free[5]
    stopped = generate_ids(model, [[1, 2, 3]], sampling, eos_id=eos)[0]
    assert stopped == free[: free.index(eos)]
    hit = generate_ids(model, [[1, 2, 3]], sampling, should_stop=lambda row, ids: len(ids) == 4)[0]
    assert hit == free[:4]


def test_bad_requests_are_refused_clearly() -> None:
    model = model_for(STYLES[0])
    with pytest.raises(UserError, match=r"prompt of 25 tokens is longer than .* \(24\)"):
        generate_ids(model, [[1] * 25], Sampling(max_new_tokens=1))
    with pytest.raises(UserError, match="top_p must be in"):
        generate_ids(model, [[1]], Sampling(top_p=1.5))
    with pytest.raises(UserError, match="at least one token"):
        generate_ids(model, [[]], Sampling())
