"""The serving engine's KV cache: one fixed row ("slot") per running sequence, sized from memory.

Storage per layer is `[slots, kv_heads, capacity + 1, head_dim]` for keys and for values,
allocated once. A sequence owns one slot while it runs and writes the keys of its token at
position p into column p, so sequences of different lengths share one batched forward pass
(`GPT.run(..., positions=...)` masks each row to its own columns). The extra last column is
scratch: padding tokens and idle rows of a fixed-size decode batch write there, and no real
token ever attends to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tessera.core.errors import UserError


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
