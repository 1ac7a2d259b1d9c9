"""Sliding-window causal attention through FlexAttention, on Hopper GPUs only.

With `attention_window: W` a token attends to itself and the W - 1 tokens before it. FlexAttention
turns that rule into a block-sparse kernel that skips the blocks outside the window, which is
where the saving is; elsewhere the same rule would be a dense mask that costs more than full
attention, so training refuses any device but a CUDA GPU of compute capability 9.0 or later
(generation with a KV cache uses the dense mask on any device: it is exact, only not faster).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from tessera.core.errors import UserError

HOPPER = (9, 0)


def check_flex_device(device: torch.device | str, what: str = "model.attention_window") -> None:
    """Refuse, naming `what`, unless `device` is a CUDA GPU of compute capability >= 9.0."""
    device = torch.device(device)
    capability = _capability(str(device))
    if capability is not None and capability >= HOPPER:
        return
    if capability is not None:
        found = f"a CUDA GPU of compute capability {capability[0]}.{capability[1]}"
    else:
        found = f"device {device.type!r}"
    raise UserError(
        f"{what}: sliding-window attention runs through FlexAttention's block-sparse kernels "
        f"on Hopper GPUs (compute capability 9.0 or later, e.g. H100/H200); this run has "
        f"{found}, where it would be a dense mask slower than full attention. Remove "
        "attention_window (or the sliding_window_attention method), or train on a Hopper GPU."
    )


@functools.lru_cache(maxsize=8)
def _capability(device: str) -> tuple[int, int] | None:
    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_capability(torch.device(device))


def window_rule(window: int) -> Callable[..., Any]:
    """FlexAttention's mask function: query q sees key k when k <= q < k + window."""

    def causal_window(batch: Any, head: Any, q_index: Any, kv_index: Any) -> Any:
        return (q_index >= kv_index) & (q_index - kv_index < window)

    return causal_window


@functools.lru_cache(maxsize=16)
def _block_mask(length: int, window: int, device: str) -> Any:
    from torch.nn.attention.flex_attention import create_block_mask

    return create_block_mask(window_rule(window), None, None, length, length, device=device)


@functools.cache
def _compiled_flex() -> Callable[..., torch.Tensor]:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def sliding_window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int
) -> torch.Tensor:
    """Causal attention of q, k, v [B, H, T, D] within `window` positions (Hopper only)."""
    check_flex_device(q.device)
    block_mask = _block_mask(q.shape[-2], window, str(q.device))
    return _compiled_flex()(q, k, v, block_mask=block_mask, enable_gqa=q.shape[1] != k.shape[1])
