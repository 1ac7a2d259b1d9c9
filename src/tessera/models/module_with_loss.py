"""`ModuleWithLoss`: any `nn.Module` plus a loss function, trainable by Tessera.

Batches are `(inputs, targets)`; the module sees `inputs`, the loss sees `(outputs, targets)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tessera.core.model import TrainableModel

if TYPE_CHECKING:  # torchmetrics is slow to import; models import it when they build metrics
    from torchmetrics import Metric


class ModuleWithLoss(TrainableModel):
    """Wraps a plain module for the trainer; metrics come from a factory so each use is fresh."""

    def __init__(
        self,
        module: nn.Module,
        loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
        metrics: Callable[[], dict[str, Metric]] | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.module = module
        self.loss_fn = loss_fn or nn.functional.cross_entropy
        self._metrics = metrics
        self._config = config or {}

    def forward(self, batch: Any) -> Any:
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.module(inputs)

    def loss(self, outputs: Any, batch: Any) -> torch.Tensor:
        return self.loss_fn(outputs, batch[1])

    def metrics(self, train: bool = False) -> dict[str, Metric]:
        return self._metrics() if self._metrics is not None else {}

    def network(self) -> nn.Module:
        return self.module

    def display_name(self) -> str:
        """The wrapped module's class (`ResNet`); a subclass is named by its own class."""
        return type(self.module).__name__ if type(self) is ModuleWithLoss else type(self).__name__

    def export_config(self) -> dict[str, Any]:
        return dict(self._config)
