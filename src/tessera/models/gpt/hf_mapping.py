"""How Tessera's GPT tensors correspond to Hugging Face checkpoints: one table per architecture.

The same table serves import (`hf_import`: Hugging Face tensors into ours) and export
(`hf_export`: ours into theirs), so the two directions cannot drift apart. Each row names one
of our tensors and the Hugging Face tensors it is made of: Llama's separate q/k/v projections
are our one fused `attn.qkv` (stacked along the output dimension, in that order), its gate and
up projections our one `mlp.up`; GPT-2 stores linear weights transposed (its Conv1D layout).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from tessera.models.gpt.config import GPTConfig


@dataclass(frozen=True)
class Row:
    """One of our tensors (`{i}` = block index) and the Hugging Face tensors it is made of."""

    ours: str
    theirs: tuple[str, ...]
    parts: tuple[str, ...] = ()  # sizes of the pieces along dim 0: q, kv, ff
    transpose: bool = False  # GPT-2's Conv1D stores [in, out]
    bias: bool = False  # a bias: present only when the config has biases there


@dataclass(frozen=True)
class Architecture:
    """A Hugging Face causal-LM class and its tensor table."""

    name: str
    hf_class: str
    model_type: str
    rows: tuple[Row, ...]  # global tensors
    layer_rows: tuple[Row, ...]  # per block, `{i}` in the names
    ignored: tuple[str, ...] = ()  # name endings of non-weights some checkpoints carry
    prefix: str = ""  # checkpoints saved from the base model may lack it (GPT-2 'transformer.')


def _decoder_layers(attention_bias: str = "attn") -> tuple[Row, ...]:
    layer = "model.layers.{i}."
    attn, mlp = layer + "self_attn.", layer + "mlp."
    rows = [
        Row("blocks.{i}.norm1.weight", (layer + "input_layernorm.weight",)),
        Row("blocks.{i}.norm2.weight", (layer + "post_attention_layernorm.weight",)),
    ]
    for kind in ("weight", "bias"):
        is_bias = kind == "bias"
        rows += [
            Row(
                f"blocks.{{i}}.attn.qkv.{kind}",
                tuple(f"{attn}{p}_proj.{kind}" for p in "qkv"),
                ("q", "kv", "kv"),
                bias=is_bias,
            ),
            Row(f"blocks.{{i}}.attn.proj.{kind}", (f"{attn}o_proj.{kind}",), bias=is_bias),
            Row(
                f"blocks.{{i}}.mlp.up.{kind}",
                (f"{mlp}gate_proj.{kind}", f"{mlp}up_proj.{kind}"),
                ("ff", "ff"),
                bias=is_bias,
            ),
            Row(f"blocks.{{i}}.mlp.down.{kind}", (f"{mlp}down_proj.{kind}",), bias=is_bias),
        ]
    return tuple(rows)


_DECODER_GLOBAL = (
    Row("embed.weight", ("model.embed_tokens.weight",)),
    Row("norm.weight", ("model.norm.weight",)),
    Row("lm_head.weight", ("lm_head.weight",)),
)
_ROTARY_BUFFERS = ("rotary_emb.inv_freq",)


def _decoder(name: str, hf_class: str) -> Architecture:
    return Architecture(name, hf_class, name, _DECODER_GLOBAL, _decoder_layers(), _ROTARY_BUFFERS)


def _gpt2() -> Architecture:
    layer = "transformer.h.{i}."
    rows: list[Row] = []
    for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
        rows.append(Row(f"blocks.{{i}}.{ours}.weight", (f"{layer}{theirs}.weight",)))
        rows.append(Row(f"blocks.{{i}}.{ours}.bias", (f"{layer}{theirs}.bias",), bias=True))
    linears = (("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"))
    linears += (("mlp.up", "mlp.c_fc"), ("mlp.down", "mlp.c_proj"))
    for ours, theirs in linears:
        rows.append(
            Row(f"blocks.{{i}}.{ours}.weight", (f"{layer}{theirs}.weight",), transpose=True)
        )
        rows.append(Row(f"blocks.{{i}}.{ours}.bias", (f"{layer}{theirs}.bias",), bias=True))
    global_rows = (
        Row("embed.weight", ("transformer.wte.weight",)),
        Row("pos_embed.weight", ("transformer.wpe.weight",)),
        Row("norm.weight", ("transformer.ln_f.weight",)),
        Row("norm.bias", ("transformer.ln_f.bias",), bias=True),
        Row("lm_head.weight", ("lm_head.weight",)),
    )
    ignored = ("attn.bias", "attn.masked_bias")  # causal-mask buffers of older checkpoints
    return Architecture(
        "gpt2", "GPT2LMHeadModel", "gpt2", global_rows, tuple(rows), ignored, "transformer."
    )


ARCHITECTURES: dict[str, Architecture] = {
    arch.hf_class: arch
    for arch in (
        _gpt2(),
        _decoder("llama", "LlamaForCausalLM"),
        _decoder("mistral", "MistralForCausalLM"),
        _decoder("qwen2", "Qwen2ForCausalLM"),
    )
}
BY_NAME = {arch.name: arch for arch in ARCHITECTURES.values()}


def part_sizes(config: GPTConfig, parts: tuple[str, ...]) -> list[int]:
    sizes = {
        "q": config.n_head * config.head_dim,
        "kv": config.kv_heads * config.head_dim,
        "ff": config.hidden_dim,
    }
    return [sizes[p] for p in parts]


def expected_rows(arch: Architecture, config: GPTConfig) -> Iterator[tuple[str, Row]]:
    """(our tensor name, its row) for every tensor a model of this config has."""
    for row in arch.rows:
        if row.ours == "lm_head.weight" and config.tie_embeddings:
            continue
        if _present(row, config):
            yield row.ours, row
    for i in range(config.n_layer):
        for row in arch.layer_rows:
            if _present(row, config):
                yield (
                    row.ours.format(i=i),
                    Row(
                        row.ours.format(i=i),
                        tuple(t.format(i=i) for t in row.theirs),
                        row.parts,
                        row.transpose,
                        row.bias,
                    ),
                )


def _present(row: Row, config: GPTConfig) -> bool:
    if not row.bias:
        return True
    if ".attn.qkv." in row.ours:
        return config.qkv_has_bias
    return config.bias


def to_ours(row: Row, config: GPTConfig, read: Callable[[str], torch.Tensor]) -> torch.Tensor:
    """Our tensor for `row`, from the Hugging Face tensors `read(name)` returns."""
    pieces = [read(name) for name in row.theirs]
    if row.transpose:
        pieces = [p.t() for p in pieces]
    return (pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)).contiguous()


def to_theirs(row: Row, config: GPTConfig, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """The Hugging Face tensors for our `tensor` of `row`."""
    pieces = list(tensor.split(part_sizes(config, row.parts), dim=0)) if row.parts else [tensor]
    if row.transpose:
        pieces = [p.t() for p in pieces]
    return {name: p.contiguous() for name, p in zip(row.theirs, pieces)}
