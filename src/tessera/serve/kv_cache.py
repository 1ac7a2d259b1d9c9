"""The serving engine's KV cache: one fixed row ("slot") per running sequence, sized from memory.

Storage per layer is `[slots, kv_heads, capacity + 1, head_dim]` for keys and for values,
allocated once. A sequence owns one slot while it runs and writes the keys of its token at
position p into column p, so sequences of different lengths share one batched forward pass
(`GPT.run(..., positions=...)` masks each row to its own columns). The extra last column is
scratch: padding tokens and idle rows of a fixed-size decode batch write there, and no real
token ever attends to it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from tessera.core.errors import UserError

log = logging.getLogger("tessera.serve")


def bytes_per_slot(
    n_layer: int, kv_heads: int, head_dim: int, capacity: int, dtype: torch.dtype
) -> int:
    """Memory one slot of `capacity` tokens takes (keys and values of every layer)."""
    element = torch.empty((), dtype=dtype).element_size()
    return 2 * n_layer * kv_heads * head_dim * (capacity + 1) * element


def slots_for_budget(wanted: int, per_slot: int, budget_bytes: int) -> int:
    """How many of the `wanted` slots fit in `budget_bytes` (at least one, or a clear error)."""
    fit = budget_bytes // per_slot
    if fit < 1:
        raise UserError(
            f"the KV cache needs {per_slot / 2**20:.1f} MiB for one sequence of the full "
            f"context but only {budget_bytes / 2**20:.1f} MiB are available; lower "
            "--max-model-len or free memory."
        )
    return int(min(wanted, fit))


def plan_cache(model: Any, capacity: int, config: Any) -> SlotKVCache:
    """The cache for `config.max_batch` sequences of `capacity` tokens, or as many as fit
    the budget: `config.kv_memory_bytes`, else `kv_memory_fraction` of free GPU memory (CPU:
    4 GiB). Fewer slots than asked for is said aloud."""
    mc = model.config
    weight = model.embed.weight
    per_slot = bytes_per_slot(mc.n_layer, mc.kv_heads, mc.head_dim, capacity, weight.dtype)
    if config.kv_memory_bytes is not None:
        budget = config.kv_memory_bytes
    elif weight.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(weight.device)
        budget = int(free * config.kv_memory_fraction)
    else:
        budget = 4 * 2**30
    slots = slots_for_budget(config.max_batch, per_slot, budget)
    if slots < config.max_batch:
        log.warning(
            "the KV cache budget (%.1f GiB) holds %d sequences of %d tokens, not the %d asked "
            "for (--max-batch); more requests wait in the queue.",
            budget / 2**30,
            slots,
            capacity,
            config.max_batch,
        )
    return SlotKVCache(
        mc.n_layer, slots, mc.kv_heads, mc.head_dim, capacity, weight.device, weight.dtype
    )


def prefill_inputs(
    cache: SlotKVCache, chunks: list[tuple[int, int, list[int]]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, CacheStep]:
    """Token ids, positions and the cache view for prompt chunks given as (slot, first
    position, tokens), padded to the longest; padding writes to the scratch column."""
    longest = max(len(tokens) for _, _, tokens in chunks)
    ids, positions, write_at = [], [], []
    for _, start, tokens in chunks:
        pad = longest - len(tokens)
        span = list(range(start, start + len(tokens)))
        ids.append(tokens + [0] * pad)
        positions.append(span + [0] * pad)
        write_at.append(span + [cache.scratch] * pad)
    key_length = max(start + len(tokens) for _, start, tokens in chunks)
    rows = torch.tensor([slot for slot, _, _ in chunks], device=device)
    step = cache.step(rows, torch.tensor(write_at, device=device), key_length)
    return torch.tensor(ids, device=device), torch.tensor(positions, device=device), step


class SlotKVCache:
    """Key/value storage for `slots` sequences of up to `capacity` tokens each."""

    def __init__(
        self,
        n_layer: int,
        slots: int,
        kv_heads: int,
        head_dim: int,
        capacity: int,
        device: torch.device | str,
        dtype: torch.dtype,
    ) -> None:
        shape = (slots, kv_heads, capacity + 1, head_dim)
        # Zeros, not empty: a masked-out value still enters softmax-weights @ values, and a
        # NaN left in memory would survive a zero weight.
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.slots = slots
        self.capacity = capacity
        self.scratch = capacity  # the column padding writes to

    def step(self, rows: torch.Tensor | int, write_at: torch.Tensor, key_length: int) -> CacheStep:
        """The view one forward pass uses: batch row b is slot `rows[b]` (or slot b of the first
        `rows` slots when an int, which needs no gather), its token t is written at column
        `write_at[b, t]`, and attention reads columns [0, key_length)."""
        return CacheStep(self, rows, write_at, key_length)


@dataclass
class CacheStep:
    """What `GPT.run(positions=...)` writes through and reads from for one forward pass."""

    cache: SlotKVCache
    rows: torch.Tensor | int
    write_at: torch.Tensor
    key_length: int

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.cache.keys[layer], self.cache.values[layer]
        if isinstance(self.rows, int):
            row_index = torch.arange(self.rows, device=k.device).unsqueeze(1)
        else:
            row_index = self.rows.unsqueeze(1)
        # Indexing [rows, :, columns] puts the indexed dimensions first: [B, T, heads, dim].
        keys[row_index, :, self.write_at] = k.transpose(1, 2)
        values[row_index, :, self.write_at] = v.transpose(1, 2)
        if isinstance(self.rows, int):
            return keys[: self.rows, :, : self.key_length], values[
                : self.rows, :, : self.key_length
            ]
        return (
            keys[:, :, : self.key_length].index_select(0, self.rows),
            values[:, :, : self.key_length].index_select(0, self.rows),
        )
