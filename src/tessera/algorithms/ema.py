"""EMA: keep an exponential moving average of the weights and evaluate with it.

After every `update_interval` optimizer steps, `average = s * average + (1 - s) * weights`
(buffers such as BatchNorm statistics are copied). With `warmup` the smoothing used is
`s = min(smoothing, (1 + n) / (10 + n))` after n updates, so early averages are not dominated by
the initial weights (which would make a short run's evaluations meaningless). Evaluation
runs with the averaged weights (swapped in at EVAL_START, back out at EVAL_END), and at the
end of training they replace the model's weights when `replace_at_end` is set. The averaged
weights are part of checkpoints. It changes the evaluated/final model, not the training trajectory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field
from torch import nn

from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.errors import CheckpointError
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "ema"
__all__ = ["EMA", "EMAConfig", "swap_weights", "update_ema"]


class EMAConfig(ComponentConfig):
    smoothing: float = Field(
        0.999, gt=0.0, lt=1.0, description="weight of the old average at each update"
    )
    update_interval: int = Field(1, ge=1, description="optimizer steps between updates")
    replace_at_end: bool = Field(
        True, description="the model ends training with the averaged weights"
    )
    warmup: bool = Field(
        True, description="smooth with min(smoothing, (1 + n) / (10 + n)) after n updates"
    )


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers of a model by name (the tensors an average covers)."""
    tensors = dict(model.named_parameters())
    tensors.update(dict(model.named_buffers()))
    return tensors


@torch.no_grad()
def update_ema(average: dict[str, torch.Tensor], model: nn.Module, smoothing: float) -> None:
    """average <- smoothing * average + (1 - smoothing) * model, in place (buffers copied).

    One multi-tensor (`_foreach`) launch per kind instead of one per tensor: on a GPU a
    per-tensor loop over a small model's ~100 tensors costs more than its training step's
    arithmetic."""
    blend_to: list[torch.Tensor] = []
    blend_from: list[torch.Tensor] = []
    copy_to: list[torch.Tensor] = []
    copy_from: list[torch.Tensor] = []
    for name, parameter in model.named_parameters():
        if parameter.is_floating_point():
            blend_to.append(average[name])
            blend_from.append(parameter.detach())
        else:
            copy_to.append(average[name])
            copy_from.append(parameter.detach())
    for name, buffer in model.named_buffers():
        copy_to.append(average[name])
        copy_from.append(buffer)
    if blend_to:
        torch._foreach_lerp_(blend_to, blend_from, 1.0 - smoothing)
    if copy_to:
        torch._foreach_copy_(copy_to, copy_from)


@torch.no_grad()
def swap_weights(average: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Exchange the model's tensors with the stored ones, in place (the params stay objects)."""
    for name, tensor in model_tensors(model).items():
        stored = average[name]
        held = tensor.detach().clone()
        tensor.copy_(stored)
        stored.copy_(held)


class EMA(Algorithm):
    name = NAME
    Config = EMAConfig
    runs_after = ("squeeze_excite", "factorize", "blurpool", "stochastic_depth", "swa")

    def __init__(self, config: EMAConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.updates = 0
        self.average: dict[str, torch.Tensor] | None = None
        self._loaded: dict[str, torch.Tensor] | None = None
        self._swapped = False

    def match(self, event: Event, state: State) -> bool:
        return event in (
            Event.FIT_START,
            Event.AFTER_OPTIMIZER_STEP,
            Event.EVAL_START,
            Event.EVAL_END,
            Event.FIT_END,
        )

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        model = state.unwrapped_model
        if event == Event.FIT_START:
            self._start(model)
        elif event == Event.AFTER_OPTIMIZER_STEP:
            if self.average is None:
                self._start(model)
            if (state.timestamp.batch + 1) % self.config.update_interval == 0:
                smoothing = self.current_smoothing()
                update_ema(self.average, model, smoothing)  # type: ignore[arg-type]
                self.updates += 1
        elif event == Event.EVAL_START and self.average is not None and not self._swapped:
            swap_weights(self.average, model)
            self._swapped = True
        elif event == Event.EVAL_END and self._swapped:
            swap_weights(self.average, model)  # type: ignore[arg-type]
            self._swapped = False
        elif event == Event.FIT_END and self.config.replace_at_end and self.average is not None:
            if not self._swapped:
                swap_weights(self.average, model)
            self._swapped = False

    def current_smoothing(self) -> float:
        smoothing = self.config.smoothing
        if not self.config.warmup:
            return smoothing
        return min(smoothing, (1.0 + self.updates) / (10.0 + self.updates))

    def _start(self, model: nn.Module) -> None:
        tensors = model_tensors(model)
        if self._loaded is not None:
            missing = set(tensors) - set(self._loaded)
            if missing:
                raise CheckpointError(
                    f"the checkpoint's EMA weights lack {sorted(missing)[:3]}; the model "
                    "differs from the one that was averaged"
                )
            self.average = {k: self._loaded[k].to(v.device) for k, v in tensors.items()}
            self._loaded = None
        elif self.average is None:
            self.average = {k: v.detach().clone() for k, v in tensors.items()}

    def state_dict(self) -> dict[str, Any]:
        average = None if self.average is None else dict(self.average)
        return {"average": average, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state.get("updates", 0))
        if state.get("average") is not None:
            self._loaded = dict(state["average"])
            self.average = None
