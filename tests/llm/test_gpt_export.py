"""Checkpoints and Hugging Face export: transformers reproduces our logits on real text."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tessera.cli.main import main
from tessera.core.errors import CheckpointError, UserError
from tessera.data.root import find_file
from tessera.data.text import load_tokenizer
from tessera.models.gpt import GPT, GPTConfig, load_gpt, save_gpt
from tessera.models.gpt.hf_export import export_hf

SHAKESPEARE = find_file("tinyshakespeare")
STYLES = {
    "gpt2": {"position": "learned", "norm": "layernorm", "mlp": "gelu", "bias": True},
    "gpt2-untied-nobias": {"bias": False, "tie_embeddings": False},
    "llama": {
        "position": "rope",
        "norm": "rmsnorm",
        "mlp": "swiglu",
        "bias": False,
        "n_kv_head": 2,
        "tie_embeddings": False,
        "rope_theta": 500000.0,
    },
}


def perturbed_model(style: str) -> GPT:
    """A model whose every weight (norms and biases too) is random, so a wrong mapping shows."""
    torch.manual_seed(0)
    tokenizer = load_tokenizer(f"char:{SHAKESPEARE}")
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size,
        max_seq_len=128,
        n_layer=2,
        n_head=4,
        d_model=64,
        **STYLES[style],
    )
    model = GPT(config, tokenizer=tokenizer).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def test_checkpoint_round_trip_and_shape_mismatch(tmp_path: Path) -> None:
    model = perturbed_model("llama")
    save_gpt(model, tmp_path / "run" / "final")
    loaded = load_gpt(tmp_path / "run")  # a run folder is accepted: final/ is found
    ids = torch.randint(0, 65, (2, 30))
    with torch.no_grad():
        torch.testing.assert_close(loaded.run(ids), model.run(ids), rtol=0, atol=0)
    assert loaded.tokenizer.decode(loaded.tokenizer.encode("ROMEO:")) == "ROMEO:"
    other = GPT(GPTConfig(vocab_size=65, max_seq_len=128, n_layer=2, n_head=4, d_model=64))
    save_gpt(other, tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text(
        (tmp_path / "run" / "final" / "config.json").read_text()
    )
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_gpt(tmp_path / "other")
    with pytest.raises(CheckpointError, match="holds no exported model"):
        load_gpt(tmp_path)


@pytest.mark.parametrize("style", sorted(STYLES))
def test_transformers_reproduces_our_logits_on_real_text(style: str, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    model = perturbed_model(style)
    export_hf(model, tmp_path / "hf")
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "hf", dtype=torch.float32
    ).eval()
    expected_class = "GPT2LMHeadModel" if style.startswith("gpt2") else "LlamaForCausalLM"
    assert type(hf_model).__name__ == expected_class
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = SHAKESPEARE.read_text(encoding="utf-8")[5000:5120]
    ids = model.tokenizer.encode(text)
    assert hf_tokenizer(text)["input_ids"] == ids
    assert hf_tokenizer.decode(ids) == text
    batch = torch.tensor([ids])
    with torch.no_grad():
        ours, theirs = model.run(batch), hf_model(batch).logits
    assert ours.abs().max() > 1.0  # far from zero: a real comparison
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-4)


def test_export_command_and_unsupported_architectures(tmp_path: Path, capsys) -> None:
    transformers = pytest.importorskip("transformers")
    save_gpt(perturbed_model("gpt2"), tmp_path / "final")
    assert main(["export", "hf", str(tmp_path / "final"), str(tmp_path / "hf"), "--check"]) == 0
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    # The note about positions is printed, and true: 129 tokens fail in transformers, and the
    # tokenizer's truncation cuts a long text to the 128 the model has.
    assert "128 learned positions" in capsys.readouterr().out
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tokenizer.model_max_length == 128
    ids = tokenizer(SHAKESPEARE.read_text()[:1000], truncation=True, return_tensors="pt")
    assert ids["input_ids"].shape == (1, 128)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    with pytest.raises(IndexError):
        hf_model(torch.zeros(1, 129, dtype=torch.long))
    alibi = GPT(
        GPTConfig(vocab_size=65, max_seq_len=32, n_layer=1, n_head=2, d_model=16, position="alibi")
    )
    with pytest.raises(UserError, match="no native Hugging Face architecture for position='alibi'"):
        export_hf(alibi, tmp_path / "alibi")


def test_byte_tokenizer_exports_to_an_equivalent_hf_tokenizer(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from tessera.data.text import ByteTokenizer

    model = GPT(
        GPTConfig(vocab_size=257, max_seq_len=32, n_layer=1, n_head=2, d_model=16),
        tokenizer=ByteTokenizer(),
    )
    export_hf(model, tmp_path / "hf")
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = SHAKESPEARE.read_text(encoding="utf-8")[:300] + " naïve 東京 🙂\n\tend"
    assert hf_tokenizer(text)["input_ids"] == ByteTokenizer().encode(text)
    assert hf_tokenizer.decode(ByteTokenizer().encode(text)) == text
    assert hf_tokenizer.eos_token_id == 256
