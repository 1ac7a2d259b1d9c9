"""The decode forward pass of the first B slots, eager or replayed from a CUDA graph.

Decoding one token for a small batch is launch-bound: a 125M model issues ~200 small kernels
a step, and the Python that launches them takes longer than the GPU needs to run them. On
CUDA, `DecodeStep` therefore captures the step once per (batch, key length) bucket into a
CUDA graph over static input buffers and replays it. Batch sizes and key lengths are rounded
up to buckets (idle rows write to the cache's scratch column, and attention reads only the
bucket's key columns). Each graph is checked against the eager step on its first use; a
capture that fails or disagrees turns graphs off for the process, and says so.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from tessera.serve.kv_cache import SlotKVCache

log = logging.getLogger("tessera.serve")


def bucket(value: int, smallest: int, largest: int) -> int:
    """The smallest power of two >= value (at least `smallest`), capped at `largest`."""
    size = smallest
    while size < value:
        size *= 2
    return min(size, largest)


class DecodeStep:
    """Logits of one new token for slots [0, B) of a `SlotKVCache`."""

    def __init__(self, model: Any, cache: SlotKVCache, use_graphs: bool) -> None:
        self.model = model
        self.cache = cache
        device = model.embed.weight.device
        self.use_graphs = use_graphs and device.type == "cuda"
        # One static buffer for the inputs, so a step copies them in with one call: every
        # torch call releases and retakes the GIL, which the HTTP thread also wants. Row b
        # reads its token from `last` (the previous step's choice, still on the device) where
        # `follow` is 1, so a step can start before the host has seen the previous one.
        self.inputs = torch.zeros(4, cache.slots, dtype=torch.long, device=device)
        self.ids, self.positions, self.write_at, self.follow = (
            row.unsqueeze(1) for row in self.inputs
        )
        self.last = torch.zeros(cache.slots, dtype=torch.long, device=device)
        self._graphs: dict[tuple[int, int], tuple[Any, tuple[torch.Tensor, torch.Tensor]]] = {}
        self._checked: set[tuple[int, int]] = set()
        self._pool = torch.cuda.graph_pool_handle() if self.use_graphs else None

    def shape_for(self, rows: int, longest: int) -> tuple[int, int]:
        """(batch, key length) to run for `rows` slots whose longest sequence has `longest`
        tokens: rounded to buckets when graphs are on, exact otherwise."""
        if not self.use_graphs:
            return rows, longest
        return bucket(rows, 1, self.cache.slots), bucket(longest, 16, self.cache.capacity)

    def warm_up(self, longest: int | None = None) -> int:
        """Capture the graphs of every bucket up to key length `longest` now, so that no
        request pays for a capture later; returns how many were captured."""
        if not self.use_graphs:
            return 0
        limit = min(longest or self.cache.capacity, self.cache.capacity)
        batches = sorted({bucket(b, 1, self.cache.slots) for b in range(1, self.cache.slots + 1)})
        keys = sorted({bucket(k, 16, self.cache.capacity) for k in range(1, limit + 1)})
        try:
            with torch.no_grad():
                for shape in ((b, k) for b in batches for k in keys):
                    if shape not in self._graphs:
                        self._graphs[shape] = self._capture(shape)
        except RuntimeError as error:
            self._give_up(f"capturing the decode step failed ({error})")
            return 0
        return len(self._graphs)

    def __call__(
        self,
        ids: list[int],
        positions: list[int],
        write_at: list[int],
        follow: list[int],
        key_length: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, vocab] and their argmax [B] for B = len(ids) rows (slot b is row b);
        the argmax is also left in `last` for the next step."""
        batch = len(ids)
        host = torch.tensor([ids, positions, write_at, follow], dtype=torch.long)
        self.inputs[:, :batch].copy_(host, non_blocking=True)
        shape = (batch, key_length)
        if self.use_graphs:
            try:
                return self._replay(shape)
            except RuntimeError as error:  # capture can fail on some builds: say it, go eager
                self._give_up(f"capturing the decode step failed ({error})")
        return self._forward(shape)

    def _forward(self, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        batch, key_length = shape
        step = self.cache.step(batch, self.write_at[:batch], key_length)
        ids = torch.where(self.follow[:batch] == 1, self.last[:batch, None], self.ids[:batch])
        logits = self.model.run(ids, cache=step, positions=self.positions[:batch])
        final = logits[:, -1]
        best = final.argmax(dim=-1)
        self.last[:batch].copy_(best)
        return final, best

    def _replay(self, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        if shape not in self._graphs:
            self._graphs[shape] = self._capture(shape)
        graph, outputs = self._graphs[shape]
        if shape not in self._checked:
            # Eager first: it writes the same keys/values the replay writes, so running both
            # changes nothing, and the replay's logits must match the eager ones.
            previous = self.last.clone()
            expected = self._forward(shape)[0].float()
            self.last.copy_(previous)  # the replay must read the same tokens
            graph.replay()
            error = float((outputs[0].float() - expected).abs().max())
            if error > 1e-2 * max(1.0, float(expected.abs().max())):
                self._give_up(f"the CUDA-graph decode step differs from eager by {error:.3g}")
                return self._forward(shape)
            self._checked.add(shape)
            return outputs
        graph.replay()
        return outputs

    def _capture(self, shape: tuple[int, int]) -> tuple[Any, tuple[torch.Tensor, torch.Tensor]]:
        batch, _ = shape
        saved, last = self.inputs[:, :batch].clone(), self.last.clone()
        self.ids[:batch] = 0
        self.follow[:batch] = 0
        self.positions[:batch] = 0
        self.write_at[:batch] = self.cache.scratch  # warm-up and capture touch no real slot
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._forward(shape)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            outputs = self._forward(shape)
        self.inputs[:, :batch] = saved
        self.last.copy_(last)
        log.debug("captured a CUDA graph for the decode step at batch %d, key length %d", *shape)
        return graph, outputs

    def _give_up(self, reason: str) -> None:
        log.warning("%s; decoding continues without CUDA graphs (slower).", reason)
        self.use_graphs = False
        self._graphs.clear()
