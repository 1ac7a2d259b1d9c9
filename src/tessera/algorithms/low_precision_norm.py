"""LowPrecisionNorm: run normalisation layers in the autocast dtype instead of fp32.

Under automatic mixed precision, PyTorch runs LayerNorm, GroupNorm and BatchNorm in fp32 (with
casts in and out) and Tessera's RMSNorm upcasts to fp32. This method makes them compute in
bf16/fp16, saving the casts and memory traffic in every block. Each layer's class is swapped in
place for a subclass with a low-precision forward, so parameters stay the same objects and the
names and state-dict layout do not change (checkpoints and Hugging Face export are unaffected).
Outside autocast the layers behave exactly as before, so the Algorithm refuses an fp32 run
rather than silently doing nothing. It changes the math slightly (norm statistics in low
precision). BatchNorm keeps its running statistics and affine parameters in fp32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from tessera.algorithms.common import check_fields, no_effect_error, not_empty, warn_no_effect
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "low_precision_norm"
__all__ = ["LowPrecisionNormAlgorithm", "LowPrecisionNormConfig", "apply_low_precision_norm"]

NormKind = Literal["layernorm", "rmsnorm", "groupnorm", "batchnorm"]
ALL_KINDS: tuple[NormKind, ...] = ("layernorm", "rmsnorm", "groupnorm", "batchnorm")


class LowPrecisionNormConfig(ComponentConfig):
    kinds: tuple[NormKind, ...] = Field(
        ALL_KINDS,
        description="which norm layers to change: layernorm, rmsnorm, groupnorm, batchnorm",
    )

    _kinds_not_empty = field_validator("kinds")(not_empty)


def _autocast_dtype(tensor: torch.Tensor) -> torch.dtype | None:
    device_type = tensor.device.type
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def _cast(tensor: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(dtype)


# Each computes a norm layer on inputs already cast to the low-precision dtype, autocast off.
def _layer_norm(cls: type, norm: Any, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    weight, bias = _cast(norm.weight, dtype), _cast(norm.bias, dtype)
    return F.layer_norm(x, norm.normalized_shape, weight, bias, norm.eps)


def _group_norm(cls: type, norm: Any, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    weight, bias = _cast(norm.weight, dtype), _cast(norm.bias, dtype)
    return F.group_norm(x, norm.num_groups, weight, bias, norm.eps)


def _batch_norm(cls: type, norm: Any, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # BatchNorm's own forward: its running statistics and affine parameters stay fp32.
    return cls.forward(norm, x)


def _rms_norm(cls: type, norm: Any, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    dims = tuple(range(-len(getattr(norm, "normalized_shape", (0,))), 0))
    normed = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + norm.eps)
    return normed if norm.weight is None else norm.weight.to(dtype) * normed


_COMPUTE = {
    "layernorm": _layer_norm,
    "groupnorm": _group_norm,
    "batchnorm": _batch_norm,
    "rmsnorm": _rms_norm,
}
_CLASSES: dict[type, type] = {}


def _low_precision_class(cls: type, kind: NormKind) -> type:
    """`LowPrecision<cls>`: `cls` whose forward computes in the autocast dtype (made once)."""
    if cls not in _CLASSES:
        compute = _COMPUTE[kind]

        def forward(self: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
            dtype = _autocast_dtype(inputs)
            if dtype is None:
                return cls.forward(self, inputs)
            with torch.autocast(inputs.device.type, enabled=False):
                return compute(cls, self, inputs.to(dtype), dtype)

        name = f"LowPrecision{cls.__name__}"
        _CLASSES[cls] = type(name, (cls,), {"forward": forward, "__module__": __name__})
    return _CLASSES[cls]


def is_rms_norm(module: nn.Module) -> bool:
    """An RMSNorm with a float `eps` and a `weight` (Tessera's, or torch.nn.RMSNorm's)."""
    has_eps = isinstance(getattr(module, "eps", None), float)
    return type(module).__name__ == "RMSNorm" and has_eps and hasattr(module, "weight")


def _kind_of(module: nn.Module) -> NormKind | None:
    cls = type(module)
    if cls is nn.LayerNorm:
        return "layernorm"
    if cls is nn.GroupNorm:
        return "groupnorm"
    if cls in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
        return "batchnorm"
    if is_rms_norm(module):
        return "rmsnorm"
    return None  # other classes (subclasses with their own forward included) are left alone


def norm_layers(model: nn.Module, kinds: tuple[str, ...] | list[str] = ALL_KINDS) -> list:
    """The model's norm layers of the given kinds that the method can change."""
    return [m for m in model.modules() if _kind_of(m) in kinds]


def apply_low_precision_norm(
    model: nn.Module, kinds: tuple[str, ...] | list[str] = ALL_KINDS
) -> int:
    """Swap every norm layer of the given kinds to its low-precision class; returns how many."""
    check_fields(LowPrecisionNormConfig, NAME, kinds=kinds)
    layers = norm_layers(model, kinds)
    for module in layers:
        module.__class__ = _low_precision_class(type(module), _kind_of(module))  # type: ignore[arg-type]
    if not layers:
        warn_no_effect(NAME, f"the model has no norm layers of kinds {list(kinds)}")
    return len(layers)


class LowPrecisionNormAlgorithm(Algorithm):
    name = NAME
    Config = LowPrecisionNormConfig
    conflicts = ("ghost_batchnorm",)
    runs_before = ("compile",)

    def match(self, event: Event, state: State) -> bool:
        return event == Event.INIT

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        kinds = self.config.kinds
        if state.precision.autocast_dtype is None:
            raise no_effect_error(
                NAME,
                f"precision is '{state.precision.value}'; low-precision norms only act "
                "under 'amp_bf16' or 'amp_fp16'",
            )
        if not norm_layers(state.model, kinds):
            raise no_effect_error(NAME, f"the model has no norm layers of kinds {list(kinds)}")
        apply_low_precision_norm(state.model, kinds)
