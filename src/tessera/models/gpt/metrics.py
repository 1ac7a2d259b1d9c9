"""Language-model metrics: mean token loss, perplexity and bits per character.

All three accumulate the same two sums (total negative log-likelihood in nats, and the number
of scored tokens), so they are exact over a whole validation set, not averages of batch means,
and they reduce correctly across processes.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric

_KINDS = ("loss", "perplexity", "bits")


class TokenLoss(Metric):
    """Mean next-token loss over all scored tokens, as 'loss' (nats), 'perplexity' (exp of the
    loss) or 'bits' (bits per token; bits per character for character/byte tokenizers)."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, kind: str = "loss") -> None:
        super().__init__()
        if kind not in _KINDS:
            raise ValueError(f"TokenLoss kind must be one of {_KINDS}, not {kind!r}")
        self.kind = kind
        self.add_state("nll_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, nll: torch.Tensor, mask: torch.Tensor) -> None:
        """Add per-token losses `nll` where `mask` is True."""
        self.nll_sum += (nll.double() * mask).sum()
        self.count += mask.sum()

    def compute(self) -> torch.Tensor:
        mean = self.nll_sum / self.count.clamp(min=1)
        if self.kind == "perplexity":
            return mean.exp()
        if self.kind == "bits":
            return mean / math.log(2)
        return mean
