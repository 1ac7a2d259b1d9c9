"""Long sequences: the chunked output layer gives the plain loss and gradients without ever
holding the full logits, activation checkpointing (full and selective) gives the same
gradients while recomputing what it says, RoPE scaling follows its formulas, and the 32k
recipe runs at a tiny shape."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tessera.config import load_config
from tessera.config.build import build_trainer
from tessera.data.text import ByteTokenizer, read_documents, tokenize_to_folder
from tessera.models.gpt import GPT, GPTConfig
from tessera.models.gpt.config import RopeScaling
from tessera.models.gpt.layers import scaled_frequencies
from tessera.models.gpt.losses import linear_cross_entropy, token_logprobs
from tessera.parallel.blocks import apply_activation_checkpointing

ROOT = Path(__file__).resolve().parents[2]
SHAKESPEARE = ROOT / ".." / "shared" / "data" / "tinyshakespeare" / "input.txt"
LLAMA = {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu", "bias": False}


def tiny(**overrides: object) -> GPTConfig:
    fields = {"vocab_size": 97, "max_seq_len": 64, "n_layer": 2, "n_head": 4, "d_model": 32}
    return GPTConfig(**{**fields, **LLAMA, **overrides})


@pytest.mark.parametrize("tied", [True, False])
def test_chunked_loss_equals_the_plain_loss_and_gradients(tied: bool) -> None:
    torch.manual_seed(0)
    plain = GPT(tiny(tie_embeddings=tied))
    chunked = GPT(tiny(tie_embeddings=tied, loss_chunk_tokens=7))
    chunked.load_state_dict(plain.state_dict())
    ids = torch.randint(0, 97, (3, 41))
    labels = ids.clone()
    labels[:, :9] = -100  # a prompt: no loss there
    batch = {"input_ids": ids, "labels": labels}
    expected = plain.loss(plain(batch), batch)
    expected.backward()
    outputs = chunked(batch)
    assert set(outputs) == {"features"}  # no logits leave the forward pass
    got = chunked.loss(outputs, batch)
    got.backward()
    assert got.item() == pytest.approx(expected.item(), abs=1e-6)
    for (name, a), b in zip(plain.named_parameters(), chunked.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-6, msg=name)
    # Evaluation's per-token losses agree too.
    with torch.no_grad():
        torch.testing.assert_close(
            chunked.eval_forward(batch)["nll"], plain.eval_forward(batch)["nll"], atol=1e-5, rtol=0
        )


def test_chunks_never_hold_the_full_logits() -> None:
    torch.manual_seed(1)
    tokens, vocab, width, chunk = 96, 500, 16, 16
    hidden = torch.randn(tokens, width, requires_grad=True)
    weight = torch.randn(vocab, width, requires_grad=True)
    targets = torch.randint(0, vocab, (tokens,))

    class Largest(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for item in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(item, torch.Tensor):
                    self.largest = max(self.largest, item.numel())
            return out

    with Largest() as chunked:
        linear_cross_entropy(hidden, weight, targets, chunk).backward()
    with Largest() as plain:
        torch.nn.functional.cross_entropy(hidden @ weight.t(), targets).backward()
    assert plain.largest >= tokens * vocab
    assert chunked.largest <= max(chunk * vocab, vocab * width)
    # token_logprobs (DPO) chunks too, and gives log_softmax's values.
    values = token_logprobs(hidden.detach(), weight.detach(), targets, chunk)
    direct = torch.log_softmax(hidden @ weight.t(), -1).gather(1, targets[:, None])[:, 0]
    torch.testing.assert_close(values, direct.detach(), atol=1e-5, rtol=0)


class _OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def test_full_and_selective_checkpointing() -> None:
    batch = {"input_ids": torch.randint(0, 97, (2, 33))}
    counts, grads = {}, {}
    for mode in (None, "full", "selective"):
        torch.manual_seed(2)
        model = GPT(tiny())
        if mode:
            assert apply_activation_checkpointing(model, mode=mode) == 2
        loss = model.loss(model(batch), batch)
        with _OpCounter() as counter:
            loss.backward()
        counts[mode] = counter.ops
        grads[mode] = [p.grad for p in model.parameters()]
    for mode in ("full", "selective"):
        for a, b in zip(grads[None], grads[mode]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    attention = "_scaled_dot_product_flash_attention_for_cpu"
    # full recomputes the blocks' matrix products and attention in backward ...
    assert counts["full"]["mm"] > counts[None]["mm"] and counts["full"][attention] == 2
    # ... selective keeps those and recomputes only the cheap operations (norms, SwiGLU).
    assert counts["selective"]["mm"] == counts[None]["mm"]
    assert counts["selective"][attention] == 0
    assert counts["selective"]["rsqrt"] > counts[None]["rsqrt"]


def test_rope_scaling_frequencies() -> None:
    head_dim, theta = 64, 500000.0
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    linear = scaled_frequencies(inv_freq, RopeScaling(kind="linear", factor=4.0))
    torch.testing.assert_close(linear, inv_freq / 4.0)
    scaling = RopeScaling(
        kind="llama3",
        factor=8.0,
        low_freq_factor=1.0,
        high_freq_factor=4.0,
        original_max_seq_len=8192,
    )
    scaled = scaled_frequencies(inv_freq, scaling)
    for f, s in zip(inv_freq.tolist(), scaled.tolist()):
        wavelength = 2 * math.pi / f
        if wavelength < 8192 / 4.0:  # fast rotations: unchanged
            assert s == pytest.approx(f)
        elif wavelength > 8192 / 1.0:  # slow ones: stretched by the factor
            assert s == pytest.approx(f / 8.0)
        else:  # in between: a blend
            assert f / 8.0 < s < f
    with pytest.raises(Exception, match="llama3 needs original_max_seq_len"):
        RopeScaling(kind="llama3", factor=8.0)


def test_long_context_recipe_runs_at_a_tiny_shape(tmp_path: Path) -> None:
    text = tmp_path / "part.txt"
    text.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    tokenize_to_folder(read_documents([text]), ByteTokenizer(), tmp_path / "tokens", seq_len=64)
    recipe = ROOT / "recipes" / "gpt-1b-32k.yaml"
    shipped = load_config(recipe)
    assert shipped.model.max_seq_len == 32768 and shipped.activation_checkpointing == "selective"
    overrides = [
        f"data.path={tmp_path / 'tokens'}",
        f"model.tokenizer={tmp_path / 'tokens' / 'tokenizer.json'}",
        "model.vocab_size=null",
        "model.n_layer=2",
        "model.n_head=2",
        "model.d_model=32",
        "model.d_ff=64",
        "model.max_seq_len=64",
        "model.loss_chunk_tokens=48",
        "max_duration=2ba",
        "eval_interval=2ba",
        "save_interval=null",
        "precision=fp32",
        "device=cpu",
        "data.batch_size=4",
        "data.eval_max_sequences=4",
        "data.num_workers=0",
        "compile=null",
        "callbacks={}",
        "loggers={}",
        f"run_dir={tmp_path}",
    ]
    trainer = build_trainer(load_config(recipe, overrides))
    trainer.fit()
    assert trainer.state.timestamp.batch == 2
    assert trainer.state.eval_results["eval"]["loss"] < 6.0
