"""`torch.compile` as a step of `parallelize`: graph capture and fused kernels.

The model is compiled in place (`nn.Module.compile`: same object, same parameter names, so
checkpoints keep plain names) after every model change and activation checkpointing, before
DDP/FSDP wrap it. The math is unchanged up to floating-point reassociation in fused kernels.
The first batches pay the compile time, so it helps runs long enough to amortise it.
`scope: blocks` compiles each repeated block instead of the whole model: identical blocks share
one compiled graph, so compiling takes a fraction of the time, at the cost of no fusion across
block boundaries.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from tessera.core.errors import ConfigError
from tessera.core.model import model_name
from tessera.parallel.blocks import repeated_blocks
from tessera.parallel.config import CompileConfig


def compile_model(model: nn.Module, config: CompileConfig | None = None) -> nn.Module:
    """Compile `model` in place as `config` says; returns the same object."""
    config = config or CompileConfig()
    options: dict[str, Any] = {"backend": config.backend, "dynamic": config.dynamic}
    if config.backend == "inductor":
        options["mode"] = config.mode
    if config.scope == "model":
        model.compile(**options)
        return model
    blocks = repeated_blocks(model)
    if not blocks:
        raise ConfigError(
            f"compile.scope: 'blocks' found no repeated blocks in {model_name(model)} (an "
            "nn.ModuleList of two or more modules of one class); use scope: model"
        )
    for block in blocks:
        block.compile(**options)
    return model


def is_compiled(model: nn.Module) -> bool:
    """True if the model, or every one of its repeated blocks, has been compiled."""
    if getattr(model, "_compiled_call_impl", None) is not None:
        return True
    blocks = repeated_blocks(model)
    return bool(blocks) and all(
        getattr(block, "_compiled_call_impl", None) is not None for block in blocks
    )
