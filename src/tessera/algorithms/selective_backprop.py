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
from pydantic import Field, model_validator

from tessera.algorithms.common import check_fields, inputs_and_targets
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "selective_backprop"
__all__ = ["SelectiveBackprop", "SelectiveBackpropConfig", "select_batch", "select_by_loss"]


class SelectiveBackpropConfig(ComponentConfig):
    keep: float = Field(
        0.5, gt=0.0, lt=1.0, description="fraction of each selected batch that is trained on"
    )
    beta: float = Field(
        1.0, ge=0.0, description="how strongly high-loss samples are favoured (0: uniform)"
    )
    start: float = Field(0.5, ge=0.0, le=1.0, description="fraction of the run where it starts")
    end: float = Field(0.9, ge=0.0, le=1.0, description="fraction of the run where it stops")
    interrupt: int = Field(
        2, ge=0, description="every `interrupt`-th batch trains on the whole batch (0: none)"
    )

    @model_validator(mode="after")
    def _start_before_end(self) -> SelectiveBackpropConfig:
        if self.start >= self.end:
            raise ValueError(
                f"start ({self.start}) must be before end ({self.end}), or no batch is selected"
            )
        return self


def select_by_loss(
    losses: torch.Tensor,
    keep: float,
    beta: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Indices of round(keep * N) samples, favouring high losses by percentile ** beta."""
    check_fields(SelectiveBackpropConfig, NAME, keep=keep, beta=beta)
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
    Config = SelectiveBackpropConfig
    runs_after = ("progressive_resizing",)
    runs_before = ("randaugment", "augmix", "colout", "cutout", "mixup", "cutmix")

    def is_active(self, state: State) -> bool:
        c = self.config
        if not (c.start <= state.progress() < c.end):
            return False
        return not (c.interrupt and state.timestamp.batch % c.interrupt == 0)

    def match(self, event: Event, state: State) -> bool:
        return event == Event.AFTER_DATALOADER and self.is_active(state)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        state.batch = select_batch(state.batch, state.model, self.config.keep, self.config.beta)
