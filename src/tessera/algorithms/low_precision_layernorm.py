"""LowPrecisionLayerNorm: a language model's LayerNorm/RMSNorm computed in bf16/fp16.

Under autocast, LayerNorm runs in fp32 and Tessera's RMSNorm upcasts to fp32; with this method
they compute in the autocast dtype, saving casts and memory traffic in every block. The layers
keep their class hierarchy, parameters and names (the class is swapped in place), so
checkpoints and Hugging Face export are unaffected. Outside autocast they behave exactly as
before, so the Algorithm refuses fp32 runs. It changes the math slightly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from tessera.algorithms.common import no_effect_error, warn_no_effect
from tessera.core.algorithm import Algorithm
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "low_precision_layernorm"


def _autocast_dtype(tensor: torch.Tensor) -> torch.dtype | None:
    device_type = tensor.device.type
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


class LowPrecisionLayerNorm(nn.LayerNorm):
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        dtype = _autocast_dtype(inputs)
        if dtype is None:
            return super().forward(inputs)
        weight = None if self.weight is None else self.weight.to(dtype)
        bias = None if self.bias is None else self.bias.to(dtype)
        with torch.autocast(inputs.device.type, enabled=False):
            return F.layer_norm(inputs.to(dtype), self.normalized_shape, weight, bias, self.eps)


def _low_precision_rms_forward(self: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    dtype = _autocast_dtype(inputs)
    if dtype is None:
        return type(self).__mro__[1].forward(self, inputs)
    x = inputs.to(dtype)
    normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
    return self.weight.to(dtype) * normed


_RMS_SUBCLASSES: dict[type, type] = {}


def _low_precision_rms_class(cls: type) -> type:
    if cls not in _RMS_SUBCLASSES:
        _RMS_SUBCLASSES[cls] = type(
            f"LowPrecision{cls.__name__}", (cls,), {"forward": _low_precision_rms_forward}
        )
    return _RMS_SUBCLASSES[cls]


def is_rms_norm(module: nn.Module) -> bool:
    return type(module).__name__ == "RMSNorm" and hasattr(module, "eps")


def apply_low_precision_layernorm(model: nn.Module) -> int:
    """Swap every LayerNorm / RMSNorm to its low-precision class in place; returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is nn.LayerNorm:
            module.__class__ = LowPrecisionLayerNorm
            count += 1
        elif is_rms_norm(module):
            module.__class__ = _low_precision_rms_class(type(module))
            count += 1
    if count == 0:
        warn_no_effect(NAME, "the model has no LayerNorm or RMSNorm layers")
    return count


class LowPrecisionLayerNormAlgorithm(Algorithm):
    name = NAME
    conflicts = ("low_precision_norm",)
    runs_before = ("compile",)

    def match(self, event: Event, state: State) -> bool:
        return event == Event.INIT

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if state.precision.autocast_dtype is None:
            raise no_effect_error(
                NAME,
                f"precision is '{state.precision.value}'; low-precision norms only act "
                "under 'amp_bf16' or 'amp_fp16'",
            )
        if not any(type(m) is nn.LayerNorm or is_rms_norm(m) for m in state.model.modules()):
            raise no_effect_error(NAME, "the model has no LayerNorm or RMSNorm layers")
        apply_low_precision_layernorm(state.model)
