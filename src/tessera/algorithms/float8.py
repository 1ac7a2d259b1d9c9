"""Float8: train the linear layers' matrix products in FP8 on GPUs with FP8 tensor cores.

torchao's float8 training (`torchao.float8.convert_to_float8_training`) swaps each eligible
`nn.Linear` for a `Float8Linear`: inputs, weights and gradients are scaled and cast to FP8
(e4m3 forward, e5m2 for gradients) for the three matrix products of a linear layer, which
run at twice bf16's rate on Hopper; master weights, optimizer state and everything else keep
their precision. It changes the math (FP8 rounding); loss curves track bf16 closely.

Needs an NVIDIA GPU of compute capability 8.9 or newer (Ada, Hopper, Blackwell) and
`pip install 'tessera-train[fp8]'` (torchao); anywhere else it is refused with the reason.
Pays off with `compile:` (the casts fuse into neighbouring kernels) and large matrices.
"""

from __future__ import annotations

import fnmatch
import logging
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field
from torch import nn

from tessera.algorithms.common import check_fields
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "float8"
FP8_CAPABILITY = (8, 9)
__all__ = ["Float8", "Float8Config", "convert_to_float8", "fp8_unavailable_reason"]
log = logging.getLogger(__name__)


class Float8Config(ComponentConfig):
    recipe: Literal["tensorwise", "rowwise", "rowwise_with_gw_hp"] = Field(
        "tensorwise",
        description="torchao scaling recipe: one scale per tensor (fastest), per row (more "
        "accurate), or per row with the weight gradient in high precision",
    )
    skip: list[str] = Field(
        ["lm_head", "*lm_head*"],
        description="module names (glob patterns) kept in high precision",
    )
    min_features: int = Field(
        256, ge=16, description="leave Linear layers with a smaller side alone (too small to gain)"
    )


def fp8_unavailable_reason(device: torch.device | str) -> str | None:
    """Why FP8 training cannot run on `device`, or None when it can."""
    device = torch.device(device)
    if device.type != "cuda":
        return (
            f"the run's device is {device.type}; FP8 matrix products need an NVIDIA GPU of "
            "compute capability 8.9 or newer (Ada, Hopper, Blackwell)"
        )
    capability = torch.cuda.get_device_capability(device)
    if capability < FP8_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        return (
            f"{name} has compute capability {capability[0]}.{capability[1]}; FP8 tensor cores "
            "need 8.9 or newer (Ada, Hopper, Blackwell)"
        )
    return None


def _torchao() -> Any:
    try:
        import torchao.float8 as float8
    except ImportError:
        raise ConfigError(
            f"algorithm '{NAME}' needs torchao: pip install 'tessera-train[fp8]'"
        ) from None
    return float8


def convert_to_float8(
    model: nn.Module,
    recipe: str = "tensorwise",
    skip: list[str] | tuple[str, ...] = ("lm_head", "*lm_head*"),
    min_features: int = 256,
) -> list[str]:
    """Swap every eligible Linear of `model` for torchao's Float8Linear in place; returns the
    names of the converted layers. Eligible: both sides multiples of 16 and at least
    `min_features`, name not matching `skip`."""
    check_fields(Float8Config, NAME, recipe=recipe, skip=list(skip), min_features=min_features)
    float8 = _torchao()
    converted: list[str] = []

    def eligible(module: nn.Module, name: str) -> bool:
        if not isinstance(module, nn.Linear):
            return True  # let torchao walk into containers
        sides = (module.in_features, module.out_features)
        ok = all(s % 16 == 0 and s >= min_features for s in sides)
        ok = ok and not any(fnmatch.fnmatch(name, pattern) for pattern in skip)
        if ok:
            converted.append(name)
        return ok

    config = float8.Float8LinearConfig.from_recipe_name(recipe)
    float8.convert_to_float8_training(model, module_filter_fn=eligible, config=config)
    return converted


class Float8(Algorithm):
    """Converts the model's linear layers to FP8 training at INIT, before compile."""

    name = NAME
    Config = Float8Config
    runs_after = ("gated_linear_units", "factorize", "squeeze_excite")
    conflicts = ("semi_structured_sparsity",)

    def match(self, event: Event, state: State) -> bool:
        return event == Event.INIT

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        reason = fp8_unavailable_reason(state.device)
        if reason is not None:
            raise ConfigError(f"algorithm '{NAME}': {reason}; remove algorithms.{NAME}.")
        config = self.config
        converted = convert_to_float8(state.model, config.recipe, config.skip, config.min_features)
        if not converted:
            raise ConfigError(
                f"algorithm '{NAME}': no Linear layer of the model has both sides >= "
                f"{config.min_features} and multiples of 16; nothing would run in FP8."
            )
        log.info("float8: %d linear layers train in FP8 (%s)", len(converted), config.recipe)
