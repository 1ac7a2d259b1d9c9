"""`GPTConfig`: every shape and option of the GPT family, validated, with named presets.

One config describes models from a few hundred thousand parameters to ~7B: GPT-2 style
(learned positions, LayerNorm, GELU, biases) or MPT/Llama style (RoPE or ALiBi, RMSNorm,
SwiGLU, grouped-query attention, no biases). Parameter and FLOP counts come from the config
alone, so a size can be planned before any memory is allocated.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError, UserError, did_you_mean

Position = Literal["learned", "rope", "alibi", "none"]
Norm = Literal["layernorm", "rmsnorm"]
MLPKind = Literal["gelu", "swiglu", "relu2"]
Init = Literal["gpt2", "normal", "small"]
RopeScalingKind = Literal["linear", "llama3"]

_GPT2_STYLE: dict[str, Any] = {
    "position": "learned",
    "norm": "layernorm",
    "mlp": "gelu",
    "bias": True,
    "tie_embeddings": True,
    "vocab_size": 50304,
}
_LLAMA_STYLE: dict[str, Any] = {
    "position": "rope",
    "norm": "rmsnorm",
    "mlp": "swiglu",
    "bias": False,
    "tie_embeddings": False,
    "vocab_size": 50304,
}

PRESETS: dict[str, dict[str, Any]] = {
    # Character-level demo (nanoGPT's GPU Shakespeare shape).
    "char-small": {
        **_GPT2_STYLE,
        "vocab_size": None,
        "max_seq_len": 256,
        "n_layer": 6,
        "n_head": 6,
        "d_model": 384,
    },
    "gpt-125m": {**_GPT2_STYLE, "max_seq_len": 2048, "n_layer": 12, "n_head": 12, "d_model": 768},
    "gpt-350m": {
        **_GPT2_STYLE,
        "max_seq_len": 2048,
        "n_layer": 24,
        "n_head": 16,
        "d_model": 1024,
    },
    "gpt-1b": {
        **_LLAMA_STYLE,
        "max_seq_len": 2048,
        "n_layer": 24,
        "n_head": 16,
        "d_model": 2048,
        "d_ff": 5632,
    },
    "llama-7b": {
        **_LLAMA_STYLE,
        "vocab_size": 32000,
        "max_seq_len": 4096,
        "n_layer": 32,
        "n_head": 32,
        "d_model": 4096,
        "d_ff": 11008,
    },
}


class GPTConfigError(UserError):
    """A GPT config that cannot be accepted."""


def describe_errors(error: Any, schema: type[BaseModel]) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            hint = did_you_mean(str(where), schema.model_fields)
            parts.append(f"model.{where}: unknown option; {hint}")
        elif item["type"] == "value_error" and not where:  # a check across fields
            parts.append(str(item["ctx"]["error"]))
        elif item["type"] == "value_error":
            problem = item["ctx"]["error"]
            parts.append(f"model.{where}: {item.get('input')!r} is not accepted: {problem}")
        else:
            parts.append(f"model.{where}: {item['msg']} (got {item.get('input')!r})")
    return "; ".join(parts)


class RopeScaling(ComponentConfig):
    """Stretch RoPE's frequencies to reach past the context a model was trained at.

    `linear` divides every frequency by `factor` (position interpolation); `llama3` divides
    only the low frequencies (wavelengths longer than `original_max_seq_len / low_freq_factor`)
    and blends smoothly up to `original_max_seq_len / high_freq_factor` (Llama 3.1's scheme).
    """

    kind: RopeScalingKind = Field(description="linear or llama3")
    factor: float = Field(gt=0, description="how many times longer the new context is")
    low_freq_factor: float = Field(1.0, gt=0, description="llama3: low-frequency boundary")
    high_freq_factor: float = Field(4.0, gt=0, description="llama3: high-frequency boundary")
    original_max_seq_len: int | None = Field(
        None, gt=0, description="llama3: the context the frequencies were trained at"
    )

    @model_validator(mode="after")
    def _check(self) -> RopeScaling:
        if self.kind == "llama3":
            if self.original_max_seq_len is None:
                raise ValueError("model.rope_scaling: kind llama3 needs original_max_seq_len")
            if self.high_freq_factor <= self.low_freq_factor:
                raise ValueError(
                    "model.rope_scaling: high_freq_factor must be larger than low_freq_factor"
                )
        return self


class GPTConfig(ComponentConfig):
    """Shape and options of a decoder-only transformer."""

    preset: str | None = Field(None, description="Start from a named shape; fields override it.")
    vocab_size: int | None = Field(
        None, gt=0, description="Rows of the token embedding; None = the tokenizer's size."
    )
    tokenizer: str | None = Field(
        None, description="Tokenizer file or spec ('char:CORPUS', 'byte'); saved with the model."
    )
    max_seq_len: int = Field(1024, gt=0, description="Longest sequence the model accepts.")
    n_layer: int = Field(12, gt=0, description="Transformer blocks.")
    n_head: int = Field(12, gt=0, description="Query heads per attention layer.")
    n_kv_head: int | None = Field(None, gt=0, description="Key/value heads (GQA); None = n_head.")
    d_model: int = Field(768, gt=0, description="Width of the residual stream.")
    d_ff: int | None = Field(
        None, gt=0, description="MLP hidden width; None = 4·d (GELU) or ~8/3·d (SwiGLU)."
    )
    position: Position = Field("learned", description="learned, rope, alibi or none.")
    rope_theta: float = Field(10000.0, gt=0, description="RoPE base frequency.")
    norm: Norm = Field("layernorm", description="layernorm or rmsnorm.")
    norm_eps: float = Field(1e-5, gt=0)
    mlp: MLPKind = Field("gelu", description="gelu (GPT-2), swiglu (Llama) or relu2 (ReLU²).")
    bias: bool = Field(True, description="Biases in linear layers and LayerNorm.")
    tie_embeddings: bool = Field(
        True, description="Share the token embedding with the output layer."
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on attention and residuals.")
    init: Init = Field("gpt2", description="gpt2 (0.02, scaled residuals), normal or small.")
    init_std: float = Field(0.02, gt=0)
    # Options of the GPT-2 speed runs (modded-nanogpt); each is off by default, and each has a
    # method card in docs/methods/ with its measured effect.
    qk_norm: bool = Field(False, description="RMS-normalise queries and keys per head.")
    logit_softcap: float | None = Field(
        None, gt=0, description="Squash logits smoothly into (-c, c): c·tanh(logits/c)."
    )
    zero_init_projections: bool = Field(
        False, description="Start attention/MLP output projections (and an untied head) at 0."
    )
    value_embeddings: int = Field(
        0,
        ge=0,
        description="Extra token embeddings mixed into the attention values of the first N "
        "and the last N blocks (table i serves block i and block n_layer-N+i).",
    )
    unet_skips: bool = Field(
        False,
        description="Add each first-half block's output, with a learned weight, to the input "
        "of its mirror block in the second half.",
    )
    attention_window: int | None = Field(
        None,
        ge=1,
        description="Sliding-window attention through FlexAttention (Hopper GPUs): a token "
        "sees itself and the previous attention_window - 1 tokens.",
    )
    qkv_bias: bool | None = Field(
        None, description="biases on the query/key/value projection only (Qwen2); None = bias"
    )
    gelu_approximate: Literal["none", "tanh"] = Field(
        "none", description="GELU as erf (none) or its tanh approximation (GPT-2's gelu_new)"
    )
    rope_scaling: RopeScaling | None = Field(
        None, description="stretch RoPE to a longer context (linear or llama3)"
    )
    triton_kernels: bool = Field(
        False,
        description="on CUDA with Triton installed, run SwiGLU and the RoPE head split as "
        "Tessera's Triton kernels (false: PyTorch ops, which torch.compile fuses itself)",
    )
    autocast_residual: bool = Field(
        False,
        description="under autocast, keep the residual stream in the autocast dtype (bf16) "
        "instead of float32, as Megatron-LM does by default: half its memory traffic and "
        "activation memory; norms still compute in float32",
    )
    loss_chunk_tokens: int | None = Field(
        None,
        gt=0,
        description="compute the output layer and cross-entropy this many tokens at a time, so "
        "a long sequence's logits never exist at once (None: all at once)",
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("preset"), str):  # else: its type
            name = data["preset"]
            if name not in PRESETS:
                raise ConfigError(
                    f"model.preset: unknown preset {name!r}; {did_you_mean(name, PRESETS)}"
                )
            return {**PRESETS[name], **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> GPTConfig:
        problems = []
        if self.d_model % self.n_head:
            problems.append(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        elif self.position == "rope" and self.head_dim % 2:
            problems.append(f"RoPE needs an even head size, got d_model/n_head = {self.head_dim}")
        if self.rope_scaling is not None and self.position != "rope":
            problems.append(f"rope_scaling needs position 'rope', not {self.position!r}")
        if self.n_head % self.kv_heads:
            problems.append(
                f"n_head ({self.n_head}) must be divisible by n_kv_head ({self.kv_heads})"
            )
        if 2 * self.value_embeddings > self.n_layer:
            problems.append(
                f"value_embeddings ({self.value_embeddings}) serve the first and last N blocks, "
                f"so 2·N must be at most n_layer ({self.n_layer})"
            )
        if self.attention_window is not None and self.position == "alibi":
            problems.append("attention_window does not combine with position 'alibi'")
        if self.attention_window is not None and self.dropout > 0:
            problems.append(
                f"attention_window needs dropout 0 (got {self.dropout}): FlexAttention has "
                "no attention dropout"
            )
        if self.logit_softcap is not None and self.loss_chunk_tokens is not None:
            problems.append(
                "logit_softcap does not combine with loss_chunk_tokens (the chunked loss "
                "applies the output layer itself, uncapped); leave one of them out"
            )
        if problems:
            raise ConfigError("model: " + "; ".join(problems) + ".")
        return self

    def with_vocab(self, vocab_size: int) -> GPTConfig:
        """This config with `vocab_size` set (from a tokenizer), refusing one too small."""
        if self.vocab_size is None:
            return self.model_copy(update={"vocab_size": vocab_size})
        if self.vocab_size < vocab_size:
            raise ConfigError(
                f"model.vocab_size ({self.vocab_size}) is smaller than the tokenizer's vocabulary "
                f"({vocab_size}); set vocab_size >= {vocab_size} or leave it out to use the "
                "tokenizer's."
            )
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _one_clear_error(cls, data: Any, handler: Any) -> Any:
        """Turn pydantic's report into one `UserError` naming each field (a UserError is not a
        ValueError, so pydantic passes it through to the caller unchanged)."""
        from pydantic import ValidationError

        try:
            return handler(data)
        except ValidationError as error:
            raise GPTConfigError(describe_errors(error, cls)) from None

    @classmethod
    def parse(cls, data: dict[str, Any]) -> GPTConfig:
        """Validate a dict (raises `UserError` naming each bad field)."""
        return cls.model_validate(data)

    def speedrun_options(self) -> list[str]:
        """The speed-run options this config turns on (Hugging Face has no equivalent)."""
        defaults = {"qk_norm": False, "logit_softcap": None, "value_embeddings": 0}
        defaults |= {"unet_skips": False, "attention_window": None}
        return [name for name, off in defaults.items() if getattr(self, name) != off]

    # -- derived sizes --------------------------------------------------------------------

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def qkv_has_bias(self) -> bool:
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def hidden_dim(self) -> int:
        if self.d_ff is not None:
            return self.d_ff
        if self.mlp in ("gelu", "relu2"):
            return 4 * self.d_model
        hidden = int(8 * self.d_model / 3)
        return 256 * ((hidden + 255) // 256)

    def block_parameters(self) -> int:
        """Parameters of one transformer block."""
        d, hd = self.d_model, self.head_dim
        qkv_out = (self.n_head + 2 * self.kv_heads) * hd
        attn = d * qkv_out + d * d + (qkv_out if self.qkv_has_bias else 0) + (d if self.bias else 0)
        up = 2 if self.mlp == "swiglu" else 1
        mlp = up * d * self.hidden_dim + self.hidden_dim * d
        if self.bias:
            mlp += up * self.hidden_dim + d
        norms = 2 * self._norm_parameters()
        return attn + mlp + norms

    def speedrun_parameters(self) -> int:
        """Parameters of the speed-run options: value-embedding tables and their two mixing
        weights per served block, and one weight per U-net skip."""
        tables = self.value_embeddings * self._vocab() * self.d_model
        mixing = 2 * 2 * self.value_embeddings
        skips = self.n_layer // 2 if self.unet_skips else 0
        return tables + mixing + skips

    def _norm_parameters(self) -> int:
        return self.d_model * (2 if self.norm == "layernorm" and self.bias else 1)

    def _vocab(self) -> int:
        if self.vocab_size is None:
            raise ConfigError("model.vocab_size: not set; give it or a tokenizer.")
        return self.vocab_size

    def num_parameters(self) -> int:
        """Total trainable parameters (tied embeddings counted once)."""
        total = self.n_layer * self.block_parameters() + self._norm_parameters()
        total += self._vocab() * self.d_model * (1 if self.tie_embeddings else 2)
        if self.position == "learned":
            total += self.max_seq_len * self.d_model
        return total + self.speedrun_parameters()

    def matmul_parameters(self) -> int:
        """Parameters that take part in matrix products: the blocks plus the output layer."""
        return self.n_layer * self.block_parameters() + self._vocab() * self.d_model

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs (forward + backward) per token at a sequence length.

        6·N for the matrix products plus 12·n_layer·d_model·seq_len for attention scores and
        values, the convention of PaLM and LLM Foundry (causal masking not subtracted), so MFU
        numbers compare with theirs.
        """
        return 6.0 * self.matmul_parameters() + 12.0 * self.n_layer * self.d_model * seq_len
