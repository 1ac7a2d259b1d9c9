"""Compile: run the model through `torch.compile` (graph capture + fused kernels).

The model is compiled in place at FIT_START, after every INIT surgery, so the compiled graph
sees the final modules, and checkpoints keep the plain parameter names. The
math is unchanged up to floating-point reassociation in fused kernels. The first batches pay
the compile time, so it helps runs long enough to amortise it. `scope="blocks"` compiles each
repeated block (every member of an `nn.ModuleList` of one class, e.g. a transformer's layers)
instead of the whole model: identical blocks share one compiled graph, so compiling takes a
fraction of the time, at the cost of no fusion across block boundaries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from tessera.algorithms.common import check_choice
from tessera.core.algorithm import Algorithm
from tessera.core.errors import UserError
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "compile"
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
SCOPES = ("model", "blocks")


def compile_model(
    model: nn.Module,
    mode: str = "default",
    backend: str = "inductor",
    dynamic: bool | None = None,
    scope: str = "model",
) -> nn.Module:
    """Compile `model` in place (`nn.Module.compile`): same object, same parameter names.

    `scope="blocks"` compiles each of `repeated_blocks(model)` instead of the whole model."""
    check_choice(NAME, "mode", mode, MODES)
    check_choice(NAME, "scope", scope, SCOPES)
    options: dict[str, Any] = {"backend": backend, "dynamic": dynamic}
    if backend == "inductor":
        options["mode"] = mode
    if scope == "model":
        model.compile(**options)
        return model
    blocks = repeated_blocks(model)
    if not blocks:
        raise UserError(
            f"compile scope 'blocks' found no repeated blocks in {type(model).__name__} (an "
            "nn.ModuleList of two or more modules of one class); use scope: model."
        )
    for block in blocks:
        block.compile(**options)
    return model


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """Members of every `nn.ModuleList` in `model` that holds 2+ modules of a single class."""
    blocks: list[nn.Module] = []
    for module in model.modules():
        repeated = isinstance(module, nn.ModuleList) and len(module) > 1
        if repeated and len({type(child) for child in module}) == 1:
            blocks.extend(module)
    return blocks


def is_compiled(model: nn.Module) -> bool:
    """True if the model, or every one of its repeated blocks, has been compiled."""
    if getattr(model, "_compiled_call_impl", None) is not None:
        return True
    blocks = repeated_blocks(model)
    return bool(blocks) and all(
        getattr(block, "_compiled_call_impl", None) is not None for block in blocks
    )


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
        self,
        mode: str = "default",
        backend: str = "inductor",
        dynamic: bool | None = None,
        scope: str = "model",
    ) -> None:
        check_choice(NAME, "mode", mode, MODES)
        check_choice(NAME, "scope", scope, SCOPES)
        self.mode, self.backend, self.dynamic, self.scope = mode, backend, dynamic, scope

    def match(self, event: Event, state: State) -> bool:
        return event == Event.FIT_START

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if not is_compiled(state.model):
            compile_model(state.model, self.mode, self.backend, self.dynamic, self.scope)
