"""SelectiveBackprop (Jiang et al., 2019): train only on the samples the model finds hard.

Before each selected batch, a no-grad forward pass scores every sample's loss; exactly
`keep` of the batch is kept, drawn without replacement with probability proportional to
(loss percentile) ** beta, so high-loss samples are favoured (beta=0 is uniform). The forward
and backward of the training step then run on the kept samples only. It is active between
`start` and `end` (fractions of the run), on every batch except every `interrupt`-th. It
changes the math (a biased sample of each batch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from tessera.algorithms.common import check_range, inputs_and_targets
from tessera.core.algorithm import Algorithm
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "selective_backprop"


def select_by_loss(
    losses: torch.Tensor,
    keep: float,
    beta: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Indices of round(keep * N) samples, favouring high losses by percentile ** beta."""
    check_range(NAME, "keep", keep, 0.0, 1.0, low_inclusive=False)
    check_range(NAME, "beta", beta, 0.0)
    n = losses.numel()
    count = max(1, round(keep * n))
    ranks = losses.detach().float().cpu().argsort().argsort().float()
    weights = ((ranks + 1.0) / n) ** beta
    chosen = torch.multinomial(weights, count, replacement=False, generator=generator)
    return chosen.sort().values.to(losses.device)


def select_batch(
    batch: Any,
    model_outputs: Callable[[Any], torch.Tensor],
    keep: float,
    beta: float = 1.0,
    per_sample_loss: Callable[[torch.Tensor, Any], torch.Tensor] | None = None,
) -> Any:
    """The subset of an (inputs, targets) batch that SelectiveBackprop would train on."""
    _inputs, targets = inputs_and_targets(batch, NAME)
    with torch.no_grad():
        outputs = model_outputs(batch)
        if per_sample_loss is None:
            losses = F.cross_entropy(outputs.float(), targets, reduction="none")
        else:
            losses = per_sample_loss(outputs, targets)
    chosen = select_by_loss(losses, keep, beta)
    return type(batch)([item[chosen] if isinstance(item, torch.Tensor) else item for item in batch])


class SelectiveBackprop(Algorithm):
    name = NAME
    runs_after = ("progressive_resizing",)
    runs_before = ("randaugment", "augmix", "colout", "cutout", "mixup", "cutmix")

    def __init__(
        self,
        keep: float = 0.5,
        beta: float = 1.0,
        start: float = 0.5,
        end: float = 0.9,
        interrupt: int = 2,
    ) -> None:
        check_range(NAME, "keep", keep, 0.0, 1.0, low_inclusive=False)
        check_range(NAME, "beta", beta, 0.0)
        check_range(NAME, "start", start, 0.0, 1.0)
        check_range(NAME, "end", end, start, 1.0)
        check_range(NAME, "interrupt", interrupt, 0, integer=True)
        self.keep, self.beta, self.start, self.end = keep, beta, start, end
        self.interrupt = interrupt

    def is_active(self, state: State) -> bool:
        progress = state.progress()
        if not (self.start <= progress < self.end):
            return False
        return not (self.interrupt and state.timestamp.batch % self.interrupt == 0)

    def match(self, event: Event, state: State) -> bool:
        return event == Event.AFTER_DATALOADER and self.is_active(state)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        state.batch = select_batch(state.batch, state.model, self.keep, self.beta)
