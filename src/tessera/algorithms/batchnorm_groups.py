"""BatchNormGroups: BatchNorm parameters in their own optimizer groups, with their own learning
rate and no weight decay.

From the CIFAR-10 speed runs (airbench trains BatchNorm biases at 64 times the learning rate,
without the weight decay of the other weights, and keeps the BatchNorm scales fixed at one).
A BatchNorm layer's scale and shift act on normalised activations, so they neither need nor
benefit from the decay that keeps convolution weights small, and they tolerate a much larger
step. At INIT every BatchNorm weight and bias is moved out of the optimizer group that held it
into a new group with the same settings, except: learning rate times `lr_factor`, weight decay
`weight_decay` (0 by default; decoupled for `sgdw`/`adamw` as in the rest of the optimizer).
Schedulers built on the optimizer scale the new groups too. With `train_scale: false` the
BatchNorm scales are frozen at their current value (1 at initialisation). It changes the math.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field
from torch import nn

from tessera.algorithms.common import check_fields, no_effect_error, warn_no_effect
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "batchnorm_groups"
__all__ = [
    "BatchNormGroups",
    "BatchNormGroupsConfig",
    "batchnorm_parameters",
    "split_batchnorm_groups",
]

# Keys of a param group that belong to the group itself, not to its settings.
_OWN_KEYS = ("params", "initial_lr", "decoupled_weight_decay")


class BatchNormGroupsConfig(ComponentConfig):
    lr_factor: float = Field(
        1.0, gt=0.0, allow_inf_nan=False, description="BatchNorm learning rate / the group's"
    )
    weight_decay: float = Field(
        0.0, ge=0.0, allow_inf_nan=False, description="weight decay of the BatchNorm parameters"
    )
    train_scale: bool = Field(True, description="train the BatchNorm scales (false: fixed)")


def batchnorm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The weights and biases of every BatchNorm layer (1-D, 2-D, 3-D, synchronised)."""
    found: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for parameter in (module.weight, module.bias):
                if parameter is not None and id(parameter) not in seen:
                    seen.add(id(parameter))
                    found.append(parameter)
    return found


def split_batchnorm_groups(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_factor: float = 1.0,
    weight_decay: float = 0.0,
    train_scale: bool = True,
    schedulers: Sequence[Any] = (),
) -> int:
    """Move the BatchNorm parameters of `model` into their own groups of `optimizer`.

    Each group holding some gets a sibling with the same settings, learning rate times
    `lr_factor` and `weight_decay`. Learning-rate schedulers of this optimizer among
    `schedulers` get the new groups' base rates. Returns the number of parameters moved."""
    check_fields(
        BatchNormGroupsConfig,
        NAME,
        lr_factor=lr_factor,
        weight_decay=weight_decay,
        train_scale=train_scale,
    )
    if not train_scale:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.weight is not None:
                module.weight.requires_grad_(False)
    wanted = {id(p) for p in batchnorm_parameters(model)}
    sources: list[int] = []
    for index, group in enumerate(list(optimizer.param_groups)):
        moving = [p for p in group["params"] if id(p) in wanted]
        if not moving:
            continue
        # The emptied group stays (possibly with no parameters) so group indices, and the
        # schedulers' base rates by index, keep their meaning.
        group["params"] = [p for p in group["params"] if id(p) not in wanted]
        settings = {k: v for k, v in group.items() if k not in _OWN_KEYS}
        settings.update(params=moving, lr=group["lr"] * lr_factor, weight_decay=weight_decay)
        if "initial_lr" in group:
            settings["initial_lr"] = group["initial_lr"] * lr_factor
        optimizer.add_param_group(settings)
        sources.append(index)
    if not sources:
        warn_no_effect(NAME, "no BatchNorm parameter is in the optimizer")
        return 0
    for scheduler in schedulers:
        if getattr(scheduler, "optimizer", None) is optimizer and hasattr(scheduler, "base_lrs"):
            bases = list(scheduler.base_lrs)
            scheduler.base_lrs = bases + [bases[source] * lr_factor for source in sources]
    return sum(len(g["params"]) for g in optimizer.param_groups[-len(sources) :])


class BatchNormGroups(Algorithm):
    """Split every optimizer's BatchNorm parameters into their own groups at INIT."""

    name = NAME
    Config = BatchNormGroupsConfig
    runs_after = ("ghost_batchnorm", "low_precision_norm", "fused_optimizer")
    runs_before = ("lookahead", "sam")

    def match(self, event: Event, state: State) -> bool:
        return event == Event.INIT

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        model = state.unwrapped_model
        if not batchnorm_parameters(model):
            raise no_effect_error(NAME, "the model has no BatchNorm layer")
        c = self.config
        for optimizer in state.optimizers:
            split_batchnorm_groups(
                model, optimizer, c.lr_factor, c.weight_decay, c.train_scale, state.schedulers
            )
