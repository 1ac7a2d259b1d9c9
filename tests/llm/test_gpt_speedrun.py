"""The speed-run options of the GPT (as config fields), Muon, the trapezoid schedule, the
language-model metrics without torchmetrics, and sliding-window masks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tessera.core.errors import UserError
from tessera.models.gpt import GPT, GPTConfig, load_gpt, save_gpt
from tessera.models.gpt.flex import window_rule
from tessera.models.gpt.metrics import TokenLoss
from tessera.optim import OptimizerConfig, SchedulerConfig
from tessera.optim.schedulers import WarmupStableDecay

ALL = {
    "qk_norm": True,
    "mlp": "relu2",
    "logit_softcap": 20.0,
    "value_embeddings": 1,
    "unet_skips": True,
    "tie_embeddings": False,
}


def tiny(**overrides: object) -> GPT:
    torch.manual_seed(0)
    fields = {"vocab_size": 50, "max_seq_len": 24, "n_layer": 4, "n_head": 2, "d_model": 32}
    return GPT(GPTConfig(**{**fields, "bias": False, **overrides}))


def test_every_option_together_counts_exports_and_decodes_with_a_cache(tmp_path: Path) -> None:
    model = tiny(**ALL).eval()
    assert sum(p.numel() for p in model.parameters()) == model.config.num_parameters()
    ids = torch.randint(0, 50, (2, 20))
    full = model.run(ids)
    cache = model.new_cache(2)
    prefix, step = model.run(ids[:, :12], cache=cache), model.run(ids[:, 12:13], cache=cache)
    assert torch.allclose(prefix, full[:, :12], atol=1e-5)
    assert torch.allclose(step, full[:, 12:13], atol=1e-5)
    save_gpt(model, tmp_path / "model")
    reloaded = load_gpt(str(tmp_path / "model"))
    assert reloaded.config.speedrun_options() == model.config.speedrun_options()
    assert torch.allclose(reloaded.run(ids), full, atol=1e-6)
    from tessera.models.gpt.hf_export import target_architecture

    with pytest.raises(UserError, match="qk_norm, logit_softcap, value_embeddings, unet_skips"):
        target_architecture(model.config)


def test_config_refuses_combinations_that_cannot_work() -> None:
    with pytest.raises(UserError, match="2·N must be at most n_layer"):
        tiny(value_embeddings=3)
    with pytest.raises(UserError, match="position 'alibi'"):
        tiny(attention_window=8, position="alibi")
    with pytest.raises(UserError, match="needs dropout 0"):
        tiny(attention_window=8, dropout=0.1)


def test_a_window_hides_tokens_further_back_than_it_reaches() -> None:
    q, k = torch.arange(6).view(-1, 1), torch.arange(6).view(1, -1)
    band = window_rule(3)(None, None, q, k)
    assert torch.equal(band, (k <= q) & (k > q - 3))
    # one block, window 4, decoded with a cache (the exact-mask path, any device): a token's
    # output depends on itself and the 3 before it only
    model = tiny(n_layer=1, attention_window=4).eval()
    ids = torch.randint(0, 50, (1, 12))
    changed = ids.clone()
    changed[0, 0] = (ids[0, 0] + 1) % 50
    outputs = [model.run(x, cache=model.new_cache(1)) for x in (ids, changed)]
    differs = (outputs[0] - outputs[1]).abs().amax(-1)[0] > 1e-6
    assert differs.tolist() == [True] * 4 + [False] * 8
    wide = tiny(n_layer=1, attention_window=24).eval()
    plain = tiny(n_layer=1).eval()
    assert torch.allclose(wide.run(ids, cache=wide.new_cache(1)), plain.run(ids), atol=1e-5)


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest() -> None:
    model = tiny(**ALL)
    config = OptimizerConfig(
        name="muon", lr=0.02, adam_lr=3e-3, embed_lr=0.05, head_lr=1e-3, weight_decay=0.01
    )
    muon, adam = config.build_all(model)
    assert isinstance(muon, torch.optim.Muon) and isinstance(adam, torch.optim.AdamW)
    names = {id(p): n for n, p in model.named_parameters()}
    hidden = sorted(names[id(p)] for p in muon.param_groups[0]["params"])
    assert hidden == sorted(
        n for n, p in model.named_parameters() if n.startswith("blocks.") and p.ndim == 2
    )
    by_lr = {g["lr"]: sorted(names[id(p)] for p in g["params"]) for g in adam.param_groups}
    assert by_lr[0.05] == ["embed.weight", "pos_embed.weight", "value_embeds.0.weight"]
    assert by_lr[1e-3] == ["lm_head.weight"]
    flat = next(g for g in adam.param_groups if g["lr"] == 3e-3)
    assert flat["weight_decay"] == 0.0 and all(p.ndim == 1 for p in flat["params"])
    every = [p for o in (muon, adam) for g in o.param_groups for p in g["params"]]
    assert sorted(map(id, every)) == sorted(id(p) for p in model.parameters())


def test_a_muon_step_is_an_orthogonalised_update() -> None:
    """From rest, Muon moves a matrix by lr x its shape factor x an (approximately)
    orthogonal matrix: every singular value of the step is near 1, whatever the gradient's."""
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(48, 16))
    gradient = torch.randn(48, 4) @ torch.randn(4, 16) + 0.01 * torch.randn(48, 16)  # ~rank 4
    weight.grad = gradient
    before = weight.detach().clone()
    torch.optim.Muon([weight], lr=0.1, weight_decay=0.0).step()
    step = (before - weight.detach()) / (0.1 * (48 / 16) ** 0.5)
    singular = torch.linalg.svdvals(step)
    assert singular.max() < 1.3 and singular[:4].min() > 0.5
    assert torch.linalg.svdvals(gradient)[4] < 0.1 * torch.linalg.svdvals(gradient)[0]


def test_optimizer_options_are_checked_per_family() -> None:
    with pytest.raises(ValueError, match="muon needs adam_lr"):
        OptimizerConfig(name="muon", lr=0.02)
    with pytest.raises(ValueError, match="adam_lr only apply to muon"):
        OptimizerConfig(name="adamw", lr=1e-3, adam_lr=1e-3)
    with pytest.raises(ValueError, match="build_all"):
        OptimizerConfig(name="muon", lr=0.02, adam_lr=1e-3).build(tiny())
    adamw = OptimizerConfig(name="adamw", lr=1e-3, head_lr=5e-4).build(tiny(tie_embeddings=False))
    assert sorted(g["lr"] for g in adamw.param_groups) == [5e-4, 1e-3, 1e-3, 1e-3]


def test_the_trapezoid_warms_up_holds_and_decays_to_alpha_f() -> None:
    schedule = WarmupStableDecay(t_warmup="10ba", t_decay="0.4dur", alpha_f=0.1)
    values = {t: schedule(_at(t, 100)) for t in (0, 5, 10, 40, 60, 80, 100)}
    assert values == pytest.approx({0: 0, 5: 0.5, 10: 1, 40: 1, 60: 1, 80: 0.55, 100: 0.1})
    config = SchedulerConfig(name="warmup_stable_decay", t_warmup="10ba", t_decay="0.4dur")
    assert [str(t) for t in config.times()] == ["10ba", "0.4dur"]
    with pytest.raises(ValueError, match="does not take t_decay"):
        SchedulerConfig(name="cosine_warmup", t_decay="10ba")


def _at(batch: int, batches: int):
    from tessera.core.state import State
    from tessera.core.time import Time, Timestamp

    state = State(
        model=torch.nn.Linear(1, 1),
        max_duration=Time.parse(f"{batches}ba"),
        device=torch.device("cpu"),
    )
    state.timestamp = Timestamp(batch=batch, batch_in_epoch=batch)
    return state


def test_token_loss_sums_exactly_and_needs_no_torchmetrics() -> None:
    metric = TokenLoss("bits")
    metric.update(
        torch.tensor([[1.0, 2.0], [3.0, 9.0]]), torch.tensor([[True, True], [True, False]])
    )
    metric.update(torch.tensor([2.0]), torch.tensor([True]))
    assert float(metric.compute()) == pytest.approx(2.0 / 0.6931471805599453)
    metric.reset()
    assert float(TokenLoss("perplexity").compute()) == 1.0 and float(metric.compute()) == 0.0
    assert "torchmetrics" not in TokenLoss.__module__ and TokenLoss.__mro__[1] is object
