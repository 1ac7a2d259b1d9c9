"""SWA, stochastic weight averaging (Izmailov et al., 2018): average the late-run weights.

From `start` (a fraction of the run), the weights are added to a running average every
`update_interval` batches. At FIT_END the averaged weights replace the model's, and BatchNorm
statistics are recomputed for them over `bn_batches` training batches (averaged weights do
not fit the running statistics of any single point). The average is checkpointed. It changes
the final model (usually flatter, better generalising), not the trajectory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field
from torch import nn

from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.event import Event
from tessera.core.microbatch import move_to_device

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "swa"
__all__ = ["SWA", "SWAConfig", "load_average", "recompute_batchnorm", "update_swa"]


class SWAConfig(ComponentConfig):
    start: float = Field(
        0.75, ge=0.0, lt=1.0, description="fraction of the run after which weights are averaged"
    )
    update_interval: int = Field(10, ge=1, description="batches between additions to the average")
    bn_batches: int = Field(
        50, ge=0, description="training batches that re-estimate BatchNorm statistics at the end"
    )


@torch.no_grad()
def update_swa(
    average: dict[str, torch.Tensor] | None, count: int, model: nn.Module
) -> dict[str, torch.Tensor]:
    """Running mean of the floating-point parameters: avg += (w - avg) / (count + 1)."""
    params = {k: p.detach() for k, p in model.named_parameters() if p.is_floating_point()}
    if average is None:
        return {k: p.clone() for k, p in params.items()}
    for name, value in params.items():
        average[name].add_((value - average[name]) / (count + 1))
    return average


@torch.no_grad()
def load_average(average: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Copy the averaged weights into the model's parameters (the same objects)."""
    for name, parameter in model.named_parameters():
        if name in average:
            parameter.copy_(average[name])


@torch.no_grad()
def recompute_batchnorm(
    model: nn.Module, batches: Iterable[Any], max_batches: int, device: torch.device | None = None
) -> int:
    """Reset BatchNorm running statistics and re-estimate them with a cumulative average."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta = {}
    for norm in norms:
        norm.reset_running_stats()
        momenta[norm] = norm.momentum
        norm.momentum = None
    was_training = model.training
    model.train()
    seen = 0
    for batch in batches:
        if seen >= max_batches:
            break
        model(move_to_device(batch, device) if device is not None else batch)
        seen += 1
    for norm, momentum in momenta.items():
        norm.momentum = momentum
    model.train(was_training)
    return seen


class SWA(Algorithm):
    name = NAME
    Config = SWAConfig
    runs_after = ("squeeze_excite", "factorize", "blurpool", "stochastic_depth")

    def __init__(self, config: SWAConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.average: dict[str, torch.Tensor] | None = None
        self.count = 0

    def match(self, event: Event, state: State) -> bool:
        return event in (Event.AFTER_OPTIMIZER_STEP, Event.FIT_END)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        model = state.unwrapped_model
        c = self.config
        if event == Event.AFTER_OPTIMIZER_STEP:
            if state.progress() >= c.start and state.timestamp.batch % c.update_interval == 0:
                self.average = update_swa(self.average, self.count, model)
                self.count += 1
            return
        if self.average is None:
            return
        load_average(self.average, model)
        if c.bn_batches and state.train_dataloader is not None:
            recompute_batchnorm(model, state.train_dataloader, c.bn_batches, state.device)
        logger.log_metrics({"swa/averaged_checkpoints": self.count}, state.timestamp.batch)

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average, self.count = state.get("average"), int(state.get("count", 0))
