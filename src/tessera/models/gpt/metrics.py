"""Language-model metrics: mean token loss, perplexity and bits per character.

All three accumulate the same two sums (total negative log-likelihood in nats, and the number
of scored tokens), so they are exact over a whole validation set, not averages of batch means,
and they reduce correctly across processes (summed over the ranks in `compute`).

`TokenLoss` has the metric interface the evaluator uses (`to`, `reset`, `update`, `compute`)
without subclassing torchmetrics: importing torchmetrics pulls in scipy and transformers,
seconds of start-up that a language-model run would spend on two sums.
"""

from __future__ import annotations

import math

import torch

from tessera.core import world

_KINDS = ("loss", "perplexity", "bits")


class TokenLoss:
    """Mean next-token loss over all scored tokens, as 'loss' (nats), 'perplexity' (exp of the
    loss) or 'bits' (bits per token; bits per character for character/byte tokenizers)."""

    higher_is_better = False

    def __init__(self, kind: str = "loss") -> None:
        if kind not in _KINDS:
            raise ValueError(f"TokenLoss kind must be one of {_KINDS}, not {kind!r}")
        self.kind = kind
        self.device = torch.device("cpu")
        self.reset()

    def to(self, device: torch.device | str) -> TokenLoss:
        """Keep the sums on `device` (where the model's outputs are)."""
        self.device = torch.device(device)
        self.nll_sum = self.nll_sum.to(self.device)
        self.count = self.count.to(self.device)
        return self

    def reset(self) -> None:
        self.nll_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.count = torch.zeros((), dtype=torch.long, device=self.device)

    @torch.no_grad()
    def update(self, nll: torch.Tensor, mask: torch.Tensor) -> None:
        """Add per-token losses `nll` where `mask` is True."""
        self.nll_sum += (nll.double() * mask).sum()
        self.count += mask.sum()

    def compute(self) -> torch.Tensor:
        """The metric over everything added since `reset`, on every rank together."""
        nll_sum = world.all_reduce_sum(self.nll_sum)
        count = world.all_reduce_sum(self.count)
        mean = nll_sum / count.clamp(min=1)
        if self.kind == "perplexity":
            return mean.exp()
        if self.kind == "bits":
            return mean / math.log(2)
        return mean
