"""The pieces of a GPT block: norms, rotary and ALiBi positions, attention, MLP, the block.

Everything here is shape-static and branch-free on tensor values, so `torch.compile` traces a
block without graph breaks. Attention always goes through
`torch.nn.functional.scaled_dot_product_attention`, which picks flash kernels on GPU when no
explicit mask is needed.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tessera.models.gpt.cache import KVCache
from tessera.models.gpt.config import GPTConfig, RopeScaling


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32 like Llama's."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.type_as(x)


def make_norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.d_model, config.norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=config.bias)


def rope_tables(
    head_dim: int, max_len: int, theta: float, scaling: RopeScaling | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables [max_len, head_dim] in the half-split layout (Llama's `rotate_half`)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    if scaling is not None:
        inv_freq = scaled_frequencies(inv_freq, scaling)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def scaled_frequencies(inv_freq: torch.Tensor, scaling: RopeScaling) -> torch.Tensor:
    """RoPE frequencies stretched for a longer context (see `RopeScaling`)."""
    if scaling.kind == "linear":
        return inv_freq / scaling.factor
    original = float(scaling.original_max_seq_len or 0)
    wavelength = 2 * math.pi / inv_freq
    long_wave = original / scaling.low_freq_factor  # slower than this: fully stretched
    short_wave = original / scaling.high_freq_factor  # faster than this: unchanged
    blend = (original / wavelength - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    blended = (1 - blend) * inv_freq / scaling.factor + blend * inv_freq
    stretched = torch.where(wavelength > long_wave, inv_freq / scaling.factor, inv_freq)
    between = (wavelength <= long_wave) & (wavelength >= short_wave)
    return torch.where(between, blended, stretched)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, H, T, D] by the angles of its positions (cos/sin [B or 1, 1, T, D])."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x.float() * cos + rotated.float() * sin).type_as(x)


# Device types whose tensors Tessera's Triton kernels take (Triton's interpreter,
# TRITON_INTERPRET=1, also runs them on CPU tensors: the tests do).
TRITON_DEVICES = ("cuda",)


def triton_kernels_available() -> bool:
    """Tessera's Triton kernels load only where Triton and a device they run on are."""
    if importlib.util.find_spec("triton") is None:
        return False
    return "cpu" in TRITON_DEVICES or torch.cuda.is_available()


def fused_rope(config: GPTConfig) -> Callable | None:
    """The Triton head split + RoPE op when `triton_kernels` is on and applies, else None."""
    half = config.head_dim // 2
    if not (config.triton_kernels and config.position == "rope" and not config.qk_norm):
        return None
    if half & (half - 1):  # the kernel's tiles span half a head: a power of two
        return None
    if not triton_kernels_available():
        return None
    from tessera.models.gpt.rope_kernel import rope_heads

    return rope_heads


def fused_swiglu(config: GPTConfig) -> Callable | None:
    """The Triton SwiGLU op when `triton_kernels` is on and applies, else None."""
    if not (config.triton_kernels and config.mlp == "swiglu" and triton_kernels_available()):
        return None
    from tessera.models.gpt.swiglu_kernel import swiglu

    return swiglu


def alibi_slopes(n_head: int) -> torch.Tensor:
    """Per-head ALiBi slopes (Press et al.): a geometric sequence, interleaved when n_head is
    not a power of two."""

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_head).is_integer():
        slopes = power_of_two(n_head)
    else:
        closest = 2 ** math.floor(math.log2(n_head))
        slopes = power_of_two(closest) + power_of_two(2 * closest)[0::2][: n_head - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def uses_value_embedding(config: GPTConfig, layer_index: int) -> int | None:
    """Which value-embedding table block `layer_index` mixes in (None: none): table i serves
    block i and block n_layer - N + i, so the first and last N blocks share N tables."""
    count = config.value_embeddings
    if layer_index < count:
        return layer_index
    if layer_index >= config.n_layer - count:
        return layer_index - (config.n_layer - count)
    return None


class Attention(nn.Module):
    """Multi-head or grouped-query causal self-attention."""

    def __init__(self, config: GPTConfig, layer_index: int) -> None:
        super().__init__()
        self.layer_index = layer_index
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.kv_heads, config.head_dim
        qkv_out = (self.n_head + 2 * self.n_kv_head) * self.head_dim
        self.qkv = nn.Linear(config.d_model, qkv_out, bias=config.qkv_has_bias)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.dropout = config.dropout
        self.use_rope = config.position == "rope"
        self.qk_norm = config.qk_norm
        self.window = config.attention_window
        self.fused_rope = fused_rope(config)
        if uses_value_embedding(config, layer_index) is not None:
            # weights of the block's own values and of the value embedding (modded-nanogpt)
            self.value_mix = nn.Parameter(torch.tensor([0.5, 0.5]))

    def _heads(
        self, qkv: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v [B, heads, T, D] as views of the projection, q and k normed and rotated."""
        batch, length, _ = qkv.shape
        q_size, kv_size = self.n_head * self.head_dim, self.n_kv_head * self.head_dim
        q, k, v = qkv.split([q_size, kv_size, kv_size], dim=-1)
        q = q.view(batch, length, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(batch, length, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = v.view(batch, length, self.n_kv_head, self.head_dim).transpose(1, 2)
        if self.qk_norm:
            q, k = F.rms_norm(q, (self.head_dim,)), F.rms_norm(k, (self.head_dim,))
        if self.use_rope and rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return q, k, v

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        mask: torch.Tensor | None,
        cache: KVCache | None,
        value_embed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch, length, _ = x.shape
        qkv = self.qkv(x)
        if (
            self.fused_rope is not None
            and rope is not None
            and cache is None
            and qkv.device.type in TRITON_DEVICES
        ):
            q, k, v = self.fused_rope(qkv, *rope, self.n_head, self.n_kv_head)
        else:
            q, k, v = self._heads(qkv, rope)
        if value_embed is not None:
            mixed = value_embed.view(batch, length, self.n_kv_head, self.head_dim).transpose(1, 2)
            v = self.value_mix[0] * v + self.value_mix[1] * mixed.type_as(v)
        if cache is not None:
            k, v = cache.update(self.layer_index, k, v)
        if self.window is not None and mask is None:  # training: the block-sparse kernel
            from tessera.models.gpt.flex import sliding_window_attention

            out = sliding_window_attention(q, k, v, self.window)
            out = out.transpose(1, 2).reshape(batch, length, self.n_head * self.head_dim)
            return self.proj(out)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=mask is None,
            enable_gqa=self.n_kv_head != self.n_head,
        )
        out = out.transpose(1, 2).reshape(batch, length, self.n_head * self.head_dim)
        return self.proj(out)


class MLP(nn.Module):
    """GELU MLP (GPT-2), SwiGLU (Llama; gate and up projections fused into one matrix) or
    ReLU² (relu(x)², the modded-nanogpt speed runs' MLP)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.swiglu = config.mlp == "swiglu"
        self.relu2 = config.mlp == "relu2"
        hidden = config.hidden_dim
        self.up = nn.Linear(config.d_model, hidden * (2 if self.swiglu else 1), bias=config.bias)
        self.down = nn.Linear(hidden, config.d_model, bias=config.bias)
        self.gelu_approximate = config.gelu_approximate
        self.fused_swiglu = fused_swiglu(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.swiglu:
            gate_up = self.up(x)
            if self.fused_swiglu is not None and gate_up.device.type in TRITON_DEVICES:
                return self.down(self.fused_swiglu(gate_up))
            gate, up = gate_up.chunk(2, dim=-1)
            return self.down(F.silu(gate) * up)
        if self.relu2:
            return self.down(F.relu(self.up(x)).square())
        return self.down(F.gelu(self.up(x), approximate=self.gelu_approximate))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GPTConfig, layer_index: int) -> None:
        super().__init__()
        self.norm1 = make_norm(config)
        self.attn = Attention(config, layer_index)
        self.norm2 = make_norm(config)
        self.mlp = MLP(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        value_embed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), rope, mask, cache, value_embed))
        return x + self.drop(self.mlp(self.norm2(x)))
