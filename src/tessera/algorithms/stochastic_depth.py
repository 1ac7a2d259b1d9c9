"""StochasticDepth (Huang et al., 2016), sample-wise: randomly drop residual branches.

During training each residual block's branch is zeroed for a random subset of the samples
(probability `drop_rate`, growing linearly with depth when `drop_distribution='linear'`), and
kept branches are scaled by 1 / (1 - p) so the expected output is unchanged; evaluation uses
the full network. It is implemented by wrapping the branch's last normalisation layer (the op
right before the residual sum, e.g. `bn2` of a basic block), so no parameters change. It changes
the math (a regulariser for deep networks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from tessera.algorithms.common import check_fields, no_effect_error, not_empty, warn_no_effect
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "stochastic_depth"
SHORTCUT_NAMES = ("downsample", "shortcut", "skip", "projection")
NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)
BLOCK_TYPES = ("BasicBlock", "Bottleneck", "ResidualBlock")
__all__ = ["StochasticDepth", "StochasticDepthConfig", "apply_stochastic_depth", "drop_samples"]


class StochasticDepthConfig(ComponentConfig):
    drop_rate: float = Field(
        0.2, gt=0.0, lt=1.0, description="probability a sample skips a block's branch (deepest)"
    )
    drop_distribution: Literal["uniform", "linear"] = Field(
        "linear",
        description="'linear': the rate grows with depth up to drop_rate; 'uniform': every "
        "block at drop_rate",
    )
    block_types: tuple[str, ...] = Field(
        BLOCK_TYPES, description="class names of the model's residual blocks"
    )

    _block_types_not_empty = field_validator("block_types")(not_empty)


def drop_samples(branch: torch.Tensor, drop_rate: float, training: bool) -> torch.Tensor:
    """Zero the branch for each sample with probability `drop_rate`; rescale the rest."""
    if not training or drop_rate == 0.0:
        return branch
    keep = 1.0 - drop_rate
    shape = (branch.shape[0],) + (1,) * (branch.ndim - 1)
    mask = torch.empty(shape, device=branch.device, dtype=branch.dtype).bernoulli_(keep)
    return branch * mask / keep


class DropBranch(nn.Module):
    """Wraps the last layer of a residual branch; drops its output per sample in training."""

    def __init__(self, layer: nn.Module, drop_rate: float) -> None:
        super().__init__()
        self.layer = layer
        self.train(layer.training)
        self.drop_rate = drop_rate

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return drop_samples(self.layer(inputs), self.drop_rate, self.training)

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate}"


def find_residual_blocks(model: nn.Module, block_types: tuple[str, ...]) -> list[nn.Module]:
    return [m for m in model.modules() if type(m).__name__ in block_types]


def _last_branch_norm(block: nn.Module) -> str | None:
    """The name of the block's last direct-child norm layer that is not part of the shortcut."""
    last = None
    for name, child in block.named_children():
        if name in SHORTCUT_NAMES:
            continue
        if isinstance(child, NORM_TYPES):
            last = name
    return last


def apply_stochastic_depth(
    model: nn.Module,
    drop_rate: float = 0.2,
    drop_distribution: str = "linear",
    block_types: tuple[str, ...] | list[str] = BLOCK_TYPES,
) -> int:
    """Wrap each residual block's last branch norm in a `DropBranch`; returns blocks changed."""
    check_fields(
        StochasticDepthConfig,
        NAME,
        drop_rate=drop_rate,
        drop_distribution=drop_distribution,
        block_types=block_types,
    )
    blocks = find_residual_blocks(model, tuple(block_types))
    changed = 0
    for index, block in enumerate(blocks):
        layer_name = _last_branch_norm(block)
        if layer_name is None:
            continue
        rate = drop_rate
        if drop_distribution == "linear":
            rate = drop_rate * (index + 1) / len(blocks)
        setattr(block, layer_name, DropBranch(getattr(block, layer_name), rate))
        changed += 1
    if changed == 0:
        warn_no_effect(
            NAME, f"no residual blocks of type {list(block_types)} with a norm layer found"
        )
    return changed


class StochasticDepth(Algorithm):
    name = NAME
    Config = StochasticDepthConfig
    runs_before = ("compile",)

    def match(self, event: Event, state: State) -> bool:
        return event == Event.INIT

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        c = self.config
        blocks = find_residual_blocks(state.model, c.block_types)
        if not any(_last_branch_norm(b) for b in blocks):
            raise no_effect_error(
                NAME,
                f"the model has no residual blocks of type {list(c.block_types)} "
                "with a normalisation layer (set block_types to your block class names)",
            )
        apply_stochastic_depth(state.model, c.drop_rate, c.drop_distribution, c.block_types)
