"""Tiny GPTs with a character tokenizer and the greedy decoding they are compared against."""

from __future__ import annotations

import torch

from tessera.data.text.tokenizers import CharTokenizer
from tessera.models.gpt import GPT, GPTConfig

TEXT = (
    "ROMEO: But soft, what light through yonder window breaks?\n"
    "JULIET: O Romeo, Romeo, wherefore art thou Romeo?\n"
    "user: assistant: system: Hi there, how are you today? 0123456789\n"
)
STYLES = {
    "learned": {"position": "learned"},
    "rope": {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu", "n_kv_head": 2, "bias": False},
    "alibi": {"position": "alibi", "bias": False},
}


def tiny_gpt(
    style: str = "learned",
    max_seq_len: int = 512,
    seed: int = 0,
    d_model: int = 32,
    n_layer: int = 2,
) -> GPT:
    """A random 2-layer GPT whose logits are far from uniform (so errors would show)."""
    torch.manual_seed(seed)
    tokenizer = CharTokenizer.train([TEXT], eos=True)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size,
        max_seq_len=max_seq_len,
        n_layer=n_layer,
        n_head=4,
        d_model=d_model,
        **STYLES[style],
    )
    model = GPT(config, tokenizer=tokenizer).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    return model


def greedy_reference(model: GPT, prompt: list[int], steps: int, eos: bool = False) -> list[int]:
    """The model's own greedy decoding: a full forward pass over the sequence per token
    (ending before end-of-text when `eos`)."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            window = torch.tensor([ids[-model.config.max_seq_len :]])
            token = int(model.run(window)[0, -1].argmax())
            if eos and token == model.tokenizer.eos_id:
                break
            ids.append(token)
    return ids[len(prompt) :]
