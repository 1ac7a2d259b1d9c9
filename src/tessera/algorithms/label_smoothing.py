"""LabelSmoothing: train against (1 - s) * one-hot + s / K instead of the one-hot target.

It changes the math: the cross-entropy against smoothed targets equals
`(1 - s) * CE(logits, y) + s * mean_k(-log softmax(logits)_k)`, which is how the Algorithm
applies it after the model's own loss (so it composes with MixUp/CutMix, whose mixed loss it
then smooths). Assumes the model's loss is the mean cross-entropy over classes on the last
dimension of the outputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from pydantic import Field

from tessera.algorithms.common import check_fields
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "label_smoothing"
__all__ = [
    "LabelSmoothing",
    "LabelSmoothingConfig",
    "smooth_labels",
    "smoothed_loss",
    "uniform_cross_entropy",
]


def smooth_labels(targets: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """Class indices (or one-hot/soft rows) to smoothed probability rows."""
    check_fields(LabelSmoothingConfig, NAME, smoothing=smoothing)
    if targets.ndim == 1 or not targets.is_floating_point():
        targets = F.one_hot(targets.long(), num_classes).float()
    return targets * (1.0 - smoothing) + smoothing / num_classes


def uniform_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over samples of the cross-entropy against the uniform distribution (last dim)."""
    return -F.log_softmax(logits.float(), dim=-1).mean(dim=-1).mean()


def smoothed_loss(loss: torch.Tensor, logits: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Turn a mean cross-entropy `loss` into the label-smoothed one, by the closed form."""
    return (1.0 - smoothing) * loss + smoothing * uniform_cross_entropy(logits).to(loss.dtype)


class LabelSmoothingConfig(ComponentConfig):
    smoothing: float = Field(
        0.1, ge=0.0, lt=1.0, description="probability mass spread evenly over all classes"
    )


class LabelSmoothing(Algorithm):
    """Replace the loss after it is computed by its label-smoothed value."""

    name = NAME
    Config = LabelSmoothingConfig
    runs_after = ("mixup", "cutmix")

    def match(self, event: Event, state: State) -> bool:
        return event == Event.AFTER_LOSS

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        outputs = state.outputs
        if not isinstance(outputs, torch.Tensor) or outputs.ndim < 2:
            raise ConfigError(
                "algorithm 'label_smoothing' needs model outputs that are class logits "
                f"(a tensor of shape (..., classes)); got {type(outputs).__name__}"
            )
        state.loss = smoothed_loss(state.loss, outputs, self.config.smoothing)
