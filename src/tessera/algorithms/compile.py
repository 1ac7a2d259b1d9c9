"""Compile: run the model through `torch.compile` (graph capture + fused kernels).

The model is compiled in place at FIT_START, after every INIT surgery, so the compiled graph
sees the final modules, and checkpoints keep the plain parameter names. The
math is unchanged up to floating-point reassociation in fused kernels. The first batches pay
the compile time, so it helps runs long enough to amortise it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from tessera.algorithms.common import check_choice
from tessera.core.algorithm import Algorithm
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "compile"
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_model(
    model: nn.Module, mode: str = "default", backend: str = "inductor", dynamic: bool | None = None
) -> nn.Module:
    """Compile `model` in place (`nn.Module.compile`): same object, same parameter names."""
    check_choice(NAME, "mode", mode, MODES)
    options: dict[str, Any] = {"backend": backend, "dynamic": dynamic}
    if backend == "inductor":
        options["mode"] = mode
    model.compile(**options)
    return model


def is_compiled(model: nn.Module) -> bool:
    return getattr(model, "_compiled_call_impl", None) is not None


class Compile(Algorithm):
    name = NAME
    runs_after = (
        "blurpool",
        "squeeze_excite",
        "factorize",
        "stochastic_depth",
        "ghost_batchnorm",
        "weight_standardization",
        "channels_last",
        "low_precision_norm",
        "low_precision_layernorm",
        "alibi",
        "gated_linear_units",
    )

    def __init__(
        self, mode: str = "default", backend: str = "inductor", dynamic: bool | None = None
    ) -> None:
        check_choice(NAME, "mode", mode, MODES)
        self.mode, self.backend, self.dynamic = mode, backend, dynamic

    def match(self, event: Event, state: State) -> bool:
        return event == Event.FIT_START

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if not is_compiled(state.model):
            compile_model(state.model, self.mode, self.backend, self.dynamic)
