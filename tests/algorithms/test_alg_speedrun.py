"""The GPT speed-run methods on a tiny Tessera GPT fed real Shakespeare characters: each
changes the model the way its card says, keeps the optimizer pointing at live parameters, and
is refused where it has nothing to do."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from alg_support import DATA, Probe

import tessera.algorithms as algorithms
from tessera.algorithms.batch_size_warmup import take_samples, warmup_batch_size
from tessera.algorithms.common import NoEffectWarning
from tessera.algorithms.logit_softcap import apply_logit_softcap
from tessera.algorithms.qk_norm import apply_qk_norm
from tessera.algorithms.relu_squared import apply_relu_squared
from tessera.algorithms.sliding_window_attention import apply_sliding_window
from tessera.algorithms.unet_skips import apply_unet_skips
from tessera.algorithms.value_embeddings import apply_value_embeddings
from tessera.algorithms.zero_init_projections import apply_zero_init_projections
from tessera.core.errors import ConfigError, UserError
from tessera.models.gpt.config import GPTConfig
from tessera.models.gpt.model import GPT
from tessera.optim import OptimizerConfig

SHAKESPEARE = DATA.parent / "tinyshakespeare" / "input.txt"


@pytest.fixture(scope="module")
def batch() -> dict[str, torch.Tensor]:
    text = SHAKESPEARE.read_text()
    vocabulary = {c: i for i, c in enumerate(sorted(set(text)))}
    ids = torch.tensor([vocabulary[c] for c in text[: 4 * 33]])
    return {"input_ids": ids.view(4, 33)}


def tiny_gpt(**overrides) -> GPT:
    torch.manual_seed(0)
    options = {"vocab_size": 65, "max_seq_len": 32, "n_layer": 4, "n_head": 2, "d_model": 32}
    return GPT(GPTConfig(**{**options, "bias": False, **overrides}))


def optimized(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def test_qk_norm_makes_attention_blind_to_the_scale_of_queries_and_keys(batch):
    model = tiny_gpt()
    assert apply_qk_norm(model) == 4 and model.config.qk_norm
    before = model(batch)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.weight[: 2 * 32] *= 7.0  # the query and key rows
    assert torch.allclose(model(batch), before, atol=1e-4)
    plain = tiny_gpt()
    reference = plain(batch)
    with torch.no_grad():
        for block in plain.blocks:
            block.attn.qkv.weight[: 2 * 32] *= 7.0
    assert not torch.allclose(plain(batch), reference, atol=1e-2)
    with pytest.warns(NoEffectWarning):
        assert apply_qk_norm(model) == 0


def test_relu_squared_keeps_the_weights_and_squares_a_relu(batch):
    model = tiny_gpt()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    before = model(batch)
    assert apply_relu_squared(model) == 4 and model.config.mlp == "relu2"
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert not torch.allclose(model(batch), before)
    mlp, x = model.blocks[0].mlp, torch.randn(3, 32)
    assert torch.allclose(mlp(x), mlp.down(F.relu(mlp.up(x)) ** 2))
    with pytest.warns(NoEffectWarning):
        apply_relu_squared(tiny_gpt(mlp="swiglu"))


def test_zero_init_projections_start_every_block_as_the_identity(batch):
    model = tiny_gpt()
    assert apply_zero_init_projections(model) == 8  # attention and MLP outputs of 4 blocks
    ids = batch["input_ids"][:, :-1]
    embeddings = model.embed(ids) + model.pos_embed(torch.arange(32))
    assert torch.allclose(model(batch), model.lm_head(model.norm(embeddings)), atol=1e-6)
    untied = tiny_gpt(tie_embeddings=False)
    assert apply_zero_init_projections(untied) == 9  # and the head
    assert torch.count_nonzero(untied(batch)) == 0
    # the zeroed weights are trained from the first step
    optimizer = torch.optim.SGD(untied.parameters(), lr=0.1)
    untied.loss(untied(batch), batch).backward()
    optimizer.step()
    assert torch.count_nonzero(untied.lm_head.weight) > 0


def test_logit_softcap_bounds_the_logits_by_tanh(batch):
    model = tiny_gpt()
    with torch.no_grad():
        model.lm_head.weight.mul_(50.0)  # logits beyond the cap
    raw = model(batch)
    assert raw.abs().max() > 20
    assert apply_logit_softcap(model, cap=5.0) and model.config.logit_softcap == 5.0
    capped = model(batch)
    assert capped.abs().max() <= 5.0 and (raw.abs() > 5.0).any()
    assert torch.allclose(capped, 5.0 * torch.tanh(raw / 5.0), atol=1e-5)
    with pytest.raises(ConfigError, match="cap"):
        apply_logit_softcap(model, cap=0.0)


def test_value_embeddings_feed_the_first_and_last_blocks_and_join_the_optimizer(batch):
    model = tiny_gpt()
    optimizer = torch.optim.AdamW(
        [
            {"params": [model.embed.weight], "lr": 0.5},
            {"params": [p for n, p in model.named_parameters() if n != "embed.weight"]},
        ]
    )
    before = model(batch)
    assert apply_value_embeddings(model, count=1, optimizers=[optimizer]) == 2
    served = [i for i, b in enumerate(model.blocks) if hasattr(b.attn, "value_mix")]
    assert served == [0, 3]
    assert optimized(optimizer) == {id(p) for p in model.parameters()}
    table = model.value_embeds[0].weight
    assert any(p is table for p in optimizer.param_groups[0]["params"])  # with the embedding
    with torch.no_grad():
        for index in served:  # own values only: the model as it was
            model.blocks[index].attn.value_mix.copy_(torch.tensor([1.0, 0.0]))
    assert torch.allclose(model(batch), before, atol=1e-6)
    with torch.no_grad():
        model.blocks[0].attn.value_mix.copy_(torch.tensor([0.5, 0.5]))
    assert not torch.allclose(model(batch), before, atol=1e-3)
    with pytest.raises(ConfigError, match="at least 6 blocks"):
        apply_value_embeddings(tiny_gpt(), count=3)


def test_unet_skips_connect_mirror_blocks_with_learned_weights(batch):
    model = tiny_gpt()
    optimizer = torch.optim.AdamW(model.parameters())
    before = model(batch)
    assert apply_unet_skips(model, optimizers=[optimizer]) == 2
    assert id(model.skip_weights) in optimized(optimizer)
    assert not torch.allclose(model(batch), before, atol=1e-4)
    with torch.no_grad():
        model.skip_weights.zero_()
    assert torch.allclose(model(batch), before, atol=1e-6)
    outputs = []
    for block in model.blocks:
        block.register_forward_hook(lambda module, args, out: outputs.append(out))
    inputs = []
    model.blocks[3].register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    with torch.no_grad():
        model.skip_weights.copy_(torch.tensor([0.25, 2.0]))
    model(batch)
    # the last block's input: the third block's output plus weight 1 (2.0) x the first block's
    assert torch.allclose(inputs[0], outputs[2] + 2.0 * outputs[0], atol=1e-6)


def test_sliding_window_attention_refuses_a_cpu(make_trainer, batch):
    with pytest.raises(UserError, match="Hopper"):
        apply_sliding_window(tiny_gpt(), window=8)
    model = tiny_gpt(attention_window=8)
    with pytest.raises(UserError, match="device 'cpu'"):
        model(batch)
    method = algorithms.get("sliding_window_attention", window=8)
    gpt = tiny_gpt()
    with pytest.raises(UserError, match="Hopper"):
        make_trainer([method], model=gpt, optimizer=torch.optim.AdamW(gpt.parameters()))


def test_methods_refuse_a_model_that_already_has_their_option(make_trainer):
    gpt = tiny_gpt(qk_norm=True)
    with pytest.raises(ConfigError, match="qk_norm: True"):
        make_trainer(
            [algorithms.get("qk_norm")], model=gpt, optimizer=torch.optim.SGD(gpt.parameters(), 0.1)
        )
    gpt = tiny_gpt(mlp="swiglu")
    with pytest.raises(ConfigError, match="swiglu, not GELU"):
        make_trainer(
            [algorithms.get("relu_squared")],
            model=gpt,
            optimizer=torch.optim.SGD(gpt.parameters(), 0.1),
        )
    with pytest.raises(ConfigError, match="gated_linear_units"):
        algorithms.build_algorithms({"relu_squared": {}, "gated_linear_units": {}})


def test_batch_size_warmup_trains_a_growing_share_of_each_batch(batch):
    assert warmup_batch_size(0.0, 24, 0.25, 0.5) == 6
    assert warmup_batch_size(0.25, 24, 0.25, 0.5) == 15
    assert warmup_batch_size(0.5, 24, 0.25, 0.5) == 24
    assert warmup_batch_size(0.1, 24, 0.25, 0.5, multiple_of=4) == 8
    cut = take_samples({**batch, "note": "kept"}, 2)
    assert cut["input_ids"].shape == (2, 33) and cut["note"] == "kept"
    x, y = take_samples((torch.zeros(4, 3), torch.arange(4)), 3)
    assert x.shape == (3, 3) and torch.equal(y, torch.arange(3))

    from tessera import Trainer

    model = tiny_gpt()
    data = [batch] * 4
    probe = Probe(before_forward=lambda s: s.batch["input_ids"].shape[0])
    trainer = Trainer(
        model,
        data,
        "4ba",
        optimizers=torch.optim.AdamW(model.parameters()),
        schedulers=[],
        algorithms=[algorithms.get("batch_size_warmup", min_fraction=0.25, duration=0.5)],
        callbacks=[probe],
        loggers=[],
        run_dir=None,
        device="cpu",
    )
    trainer.fit()
    assert probe.seen["before_forward"] == [1, 2, 4, 4]  # 4 x (0.25 + 0.75 p / 0.5)
    stamp = trainer.state.timestamp
    assert stamp.sample == 16  # the loader's count: what was read
    assert stamp.token == (1 + 2 + 4 + 4) * 32  # what was trained


def test_muon_and_the_speedrun_options_train_together(batch):
    """A run with Muon, the trapezoid and every speed-run method: both optimizers step, the
    schedule reaches zero, and the methods' parameters are trained."""
    from tessera import Trainer

    model = tiny_gpt(tie_embeddings=False)
    config = OptimizerConfig(name="muon", lr=0.02, adam_lr=3e-3, head_lr=1e-3)
    optimizers = config.build_all(model)
    methods = algorithms.build_algorithms(
        {
            "qk_norm": {},
            "relu_squared": {},
            "zero_init_projections": {},
            "logit_softcap": {"cap": 15.0},
            "value_embeddings": {"count": 1},
            "unet_skips": {},
        }
    )
    trainer = Trainer(
        model,
        [batch] * 6,
        "6ba",
        optimizers=optimizers,
        schedulers={"name": "warmup_stable_decay", "t_warmup": "1ba", "t_decay": "0.5dur"},
        algorithms=methods,
        callbacks=[],
        loggers=[],
        run_dir=None,
        device="cpu",
    )
    mix = None
    trainer.fit()
    mix = model.blocks[0].attn.value_mix.detach()
    config_after = model.config
    assert config_after.qk_norm and config_after.mlp == "relu2" and config_after.unet_skips
    assert config_after.value_embeddings == 1 and config_after.logit_softcap == 15.0
    assert not torch.equal(mix, torch.full((2,), 0.5))  # trained by AdamW
    assert not torch.equal(model.skip_weights.detach(), torch.ones(2))
    assert all(group["lr"] == 0.0 for opt in trainer.state.optimizers for group in opt.param_groups)
    assert sum(optimized(o) == set() for o in trainer.state.optimizers) == 0
    trained = set().union(*(optimized(o) for o in trainer.state.optimizers))
    assert trained == {id(p) for p in model.parameters()}
