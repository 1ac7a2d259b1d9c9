"""FlipTTA: evaluate on each image and its mirror image, and average the two outputs.

Test-time augmentation from the CIFAR-10 speed runs (airbench's first level): the evaluation
outputs are the mean of the model's logits on the images and on the images flipped along
`dim` (the width by default). It touches evaluation only, never training, and costs a second
forward pass per evaluation batch. For data whose classes are mirror-symmetric (clothes,
objects, animals), not for digits or text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from pydantic import Field

from tessera.algorithms.common import check_fields, inputs_and_targets, require_images, with_inputs
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError
from tessera.core.event import Event
from tessera.core.precision import autocast

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "flip_tta"
__all__ = ["FlipTTA", "FlipTTAConfig", "flip_tta_outputs"]


class FlipTTAConfig(ComponentConfig):
    dim: int = Field(
        -1, ge=-2, le=-1, description="image axis flipped: -1 the width (mirror), -2 the height"
    )


def flip_tta_outputs(
    forward: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    dim: int = -1,
    outputs: torch.Tensor | None = None,
) -> torch.Tensor:
    """The mean of `forward(inputs)` and `forward(inputs.flip(dim))` (pass `outputs` if the
    first is already computed)."""
    check_fields(FlipTTAConfig, NAME, dim=dim)
    require_images(inputs, NAME)
    plain = forward(inputs) if outputs is None else outputs
    return (plain + forward(inputs.flip(dim)).to(plain.dtype)) / 2


class FlipTTA(Algorithm):
    """After each evaluation forward pass, average in the outputs on the flipped images."""

    name = NAME
    Config = FlipTTAConfig

    def match(self, event: Event, state: State) -> bool:
        return event == Event.EVAL_AFTER_FORWARD

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        outputs = state.outputs
        if not isinstance(outputs, torch.Tensor):
            raise ConfigError(
                f"algorithm '{NAME}' averages output tensors (class logits); this model's "
                f"evaluation outputs are {type(outputs).__name__}"
            )
        inputs, _ = inputs_and_targets(state.batch, NAME)
        model = state.unwrapped_model
        batch = state.batch

        def forward(images: torch.Tensor) -> torch.Tensor:
            with autocast(state.precision, state.device):
                return model.eval_forward(with_inputs(batch, images))

        state.outputs = flip_tta_outputs(forward, inputs, self.config.dim, outputs)
