"""LowPrecisionNorm: run normalisation layers in the autocast dtype instead of fp32.

Under automatic mixed precision, PyTorch runs LayerNorm/GroupNorm/BatchNorm in fp32 (with
casts in and out). This method makes them compute in bf16/fp16, saving the casts and memory
traffic; outside autocast (fp32 runs) the layers behave exactly as before, so the Algorithm
refuses an fp32 run rather than silently doing nothing. It changes the math slightly (norm
statistics in low precision). Parameters stay the same objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from tessera.algorithms.common import check_choice, no_effect_error, warn_no_effect
from tessera.algorithms.surgery import replace_modules
from tessera.core.algorithm import Algorithm
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "low_precision_norm"
NORM_KINDS = {
    "layernorm": nn.LayerNorm,
    "groupnorm": nn.GroupNorm,
    "batchnorm": nn.modules.batchnorm._BatchNorm,
}


def _cast(tensor: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(dtype)


class LowPrecisionNorm(nn.Module):
    """Wraps a norm layer; under autocast runs it in the autocast dtype."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm
        self.train(norm.training)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        device_type = inputs.device.type
        if not torch.is_autocast_enabled(device_type):
            return self.norm(inputs)
        dtype = torch.get_autocast_dtype(device_type)
        norm = self.norm
        with torch.autocast(device_type, enabled=False):
            x = inputs.to(dtype)
            if isinstance(norm, nn.LayerNorm):
                return F.layer_norm(
                    x,
                    norm.normalized_shape,
                    _cast(norm.weight, dtype),
                    _cast(norm.bias, dtype),
                    norm.eps,
                )
            if isinstance(norm, nn.GroupNorm):
                return F.group_norm(
                    x,
                    norm.num_groups,
                    _cast(norm.weight, dtype),
                    _cast(norm.bias, dtype),
                    norm.eps,
                )
            return F.batch_norm(
                x,
                norm.running_mean,
                norm.running_var,
                norm.weight,  # batch norm takes fp32 affine params and stats
                norm.bias,
                norm.training or not norm.track_running_stats,
                norm.momentum if norm.momentum is not None else 0.1,
                norm.eps,
            )


def apply_low_precision_norm(
    model: nn.Module, kinds: tuple[str, ...] | list[str] = ("layernorm", "groupnorm", "batchnorm")
) -> int:
    """Wrap every norm layer of the given kinds; returns how many."""
    for kind in kinds:
        check_choice(NAME, "kinds", kind, NORM_KINDS)
    types = tuple(NORM_KINDS[k] for k in kinds)

    def policy(_: str, module: nn.Module) -> nn.Module | None:
        return LowPrecisionNorm(module) if isinstance(module, types) else None

    count = len(replace_modules(model, policy))
    if count == 0:
        warn_no_effect(NAME, f"the model has no norm layers of kinds {list(kinds)}")
    return count


class LowPrecisionNormAlgorithm(Algorithm):
    name = NAME
    conflicts = ("ghost_batchnorm",)
    runs_before = ("compile",)

    def __init__(
        self, kinds: tuple[str, ...] | list[str] = ("layernorm", "groupnorm", "batchnorm")
    ) -> None:
        for kind in kinds:
            check_choice(NAME, "kinds", kind, NORM_KINDS)
        self.kinds = tuple(kinds)

    def match(self, event: Event, state: State) -> bool:
        return event == Event.INIT

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if state.precision.autocast_dtype is None:
            raise no_effect_error(
                self.name,
                f"precision is '{state.precision.value}'; low-precision norms only "
                "act under 'amp_bf16' or 'amp_fp16'",
            )
        types = tuple(NORM_KINDS[k] for k in self.kinds)
        if not any(isinstance(m, types) for m in state.model.modules()):
            raise no_effect_error(self.name, f"the model has no norm layers of {list(self.kinds)}")
        apply_low_precision_norm(state.model, self.kinds)
