"""The model interface the trainer drives.

The trainer never calls a network directly: it hands each batch to a `TrainableModel`, which knows
how to run the forward pass, compute the loss and update metrics for its kind of batch. Any
`nn.Module` plus a loss function becomes one through `tessera.models.ModuleWithLoss`; the GPT
family implements it natively.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:  # torchmetrics is slow to import; models import it when they build metrics
    from torchmetrics import Metric


class TrainableModel(nn.Module):
    """Base class for models the trainer can train and evaluate.

    Subclasses implement `forward` and `loss`; the rest has sensible defaults. `forward` must be
    the only place the network runs, so wrappers (DDP, FSDP, compile) see every call.
    """

    def forward(self, batch: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, outputs: Any, batch: Any) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def eval_forward(self, batch: Any) -> Any:
        """Outputs used for evaluation metrics; by default the training forward pass."""
        return self(batch)

    def metrics(self, train: bool = False) -> dict[str, Metric]:
        """Fresh torchmetrics objects, keyed by name, for training or evaluation."""
        return {}

    def update_metric(self, batch: Any, outputs: Any, metric: Metric) -> None:
        """Feed one batch's outputs to a metric; by default `metric.update(outputs, targets)`."""
        metric.update(outputs, batch[1])

    def num_samples(self, batch: Any) -> int:
        """How many samples a batch holds (its first tensor's leading dimension)."""
        return _first_tensor(batch).shape[0]

    def num_tokens(self, batch: Any) -> int:
        """How many tokens a batch holds; 0 for models that do not count tokens."""
        return 0

    def flops_per_batch(self, batch: Any) -> float | None:
        """Training FLOPs (forward + backward) for one batch, or None if unknown (no MFU)."""
        return None

    def network(self) -> nn.Module:
        """The bare network whose weights are exported (what users load elsewhere)."""
        return self

    def display_name(self) -> str:
        """The name the console gives the model (`model_name`)."""
        return type(self).__name__

    def exported_config(self) -> dict[str, Any]:
        """What final/config.json holds: `export_config()`, plus `inputs` when the run's data
        said how it prepares each input (`DataLoaders.inputs`), so the model stands alone."""
        inputs = getattr(self, "inputs", None)
        return {**self.export_config(), "inputs": inputs} if inputs else self.export_config()

    def export_config(self) -> dict[str, Any]:
        """A JSON-able description that, with the weights, rebuilds the network without Tessera."""
        return {}


def unwrap(model: nn.Module) -> TrainableModel:
    """The `TrainableModel` inside DDP/FSDP/compile wrappers (what checkpoints save)."""
    while not isinstance(model, TrainableModel):
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if inner is None:
            raise TypeError(f"{type(model).__name__} wraps no TrainableModel")
        model = inner
    return model


def model_name(model: nn.Module) -> str:
    """The class a user knows the model by: the network inside the DDP/FSDP/compile wrappers and
    the trainer's adapter (`ResNet`, not `DistributedDataParallel` or `ModuleWithLoss`)."""
    try:
        return unwrap(model).display_name()
    except TypeError:  # a plain module: only the compile wrapper to look through
        return type(getattr(model, "_orig_mod", model)).__name__


def _first_tensor(batch: Any) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (list, tuple)):
        for item in batch:
            return _first_tensor(item)
    if isinstance(batch, dict):
        for item in batch.values():
            return _first_tensor(item)
    raise TypeError(f"cannot find a tensor in a batch of type {type(batch).__name__}")
