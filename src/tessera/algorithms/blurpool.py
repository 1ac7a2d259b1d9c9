"""BlurPool: anti-aliased downsampling (Zhang, 2019).

Strided convolutions and max-pools subsample without low-pass filtering, so small shifts of the
input change the output a lot. BlurPool puts a fixed 3x3 binomial blur before each strided conv
(the conv keeps its weights, stride and output shape) and turns `MaxPool(stride=s)` into a
stride-1 max-pool followed by a stride-s blur. It changes the math (the function the network
computes) but adds no trainable parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from tessera.algorithms.common import check_fields, no_effect_error, warn_no_effect
from tessera.algorithms.surgery import replace_modules
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "blurpool"
__all__ = ["BlurPool", "BlurPoolConfig", "apply_blurpool", "blur_2d"]


class BlurPoolConfig(ComponentConfig):
    replace_convs: bool = Field(True, description="blur in front of every strided Conv2d")
    replace_maxpools: bool = Field(
        True, description="turn every strided MaxPool2d into max-pool + strided blur"
    )
    min_channels: int = Field(
        16, ge=1, description="leave convs with fewer input channels than this alone"
    )

    @model_validator(mode="after")
    def _replaces_something(self) -> BlurPoolConfig:
        if not (self.replace_convs or self.replace_maxpools):
            raise ValueError(
                "replace_convs and replace_maxpools are both false, so the method would change "
                "nothing; set one of them to true or remove blurpool"
            )
        return self


def blur_2d(inputs: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Depthwise 3x3 binomial ([1, 2, 1] outer [1, 2, 1] / 16) blur with reflect-free padding."""
    channels = inputs.shape[1]
    row = torch.tensor([1.0, 2.0, 1.0], dtype=inputs.dtype, device=inputs.device)
    kernel = (row[:, None] * row[None, :]) / 16.0
    kernel = kernel.expand(channels, 1, 3, 3).contiguous(memory_format=_format_of(inputs))
    return F.conv2d(inputs, kernel, stride=stride, padding=1, groups=channels)


def _format_of(tensor: torch.Tensor) -> torch.memory_format:
    if tensor.ndim == 4 and tensor.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class BlurConv2d(nn.Module):
    """A strided conv with a stride-1 blur in front: same weights, same output shape."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.conv(blur_2d(inputs))


class BlurMaxPool2d(nn.Module):
    """Max-pool at stride 1, then blur and subsample at the original stride."""

    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__()
        self.kernel_size = pool.kernel_size
        self.stride = pool.stride
        self.padding = pool.padding
        self.dilation = pool.dilation
        self.ceil_mode = pool.ceil_mode

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        pooled = F.max_pool2d(inputs, self.kernel_size, 1, self.padding, self.dilation)
        out = blur_2d(pooled, stride=_first(self.stride))
        # Match the original pooling's output size exactly (even kernels differ by one).
        reference = F.max_pool2d(
            inputs[:1, :1],
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
        ).shape[-2:]
        return out[..., : reference[0], : reference[1]]


def _first(value: int | tuple[int, ...]) -> int:
    return value if isinstance(value, int) else value[0]


def apply_blurpool(
    model: nn.Module,
    replace_convs: bool = True,
    replace_maxpools: bool = True,
    min_channels: int = 16,
) -> int:
    """Blur every strided conv (with at least `min_channels` inputs) and strided max-pool.

    Returns how many modules were replaced; warns when there was nothing to replace.
    """
    check_fields(BlurPoolConfig, NAME, min_channels=min_channels)

    def policy(_: str, module: nn.Module) -> nn.Module | None:
        if (
            replace_convs
            and isinstance(module, nn.Conv2d)
            and max(module.stride) > 1
            and module.in_channels >= min_channels
        ):
            return BlurConv2d(module)
        if replace_maxpools and isinstance(module, nn.MaxPool2d) and _first(module.stride) > 1:
            return BlurMaxPool2d(module)
        return None

    count = len(replace_modules(model, policy))
    if count == 0:
        warn_no_effect(NAME, "the model has no strided Conv2d or MaxPool2d to blur")
    return count


class BlurPool(Algorithm):
    """Apply BlurPool surgery at INIT; an error if the model has nothing to blur."""

    name = NAME
    Config = BlurPoolConfig
    runs_before = ("channels_last", "compile")

    def match(self, event: Event, state: State) -> bool:
        return event == Event.INIT

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        import warnings

        config = self.config
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            count = apply_blurpool(
                state.model, config.replace_convs, config.replace_maxpools, config.min_channels
            )
        if count == 0:
            raise no_effect_error(
                NAME,
                f"the model has no strided Conv2d (with >= {config.min_channels} input "
                "channels) or MaxPool2d",
            )
        logger.log_hyperparameters({"algorithms/blurpool/replaced": count})
