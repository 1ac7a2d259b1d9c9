"""The repeated blocks of a model (a transformer's layers, a ResNet's stages' blocks): the units
activation checkpointing recomputes and FSDP shards."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tessera.core.errors import ConfigError
from tessera.core.model import model_name


def find_blocks(model: nn.Module, wrap: Sequence[str] | None = None) -> list[nn.Module]:
    """The modules FSDP shards as units: instances of the named classes, or by default every
    member of an `nn.ModuleList` (the repeated blocks of a transformer)."""
    if wrap:
        names = set(wrap)
        blocks = [m for m in model.modules() if type(m).__name__ in names and m is not model]
        found = {type(m).__name__ for m in blocks}
        missing = names - found
        if missing:
            present = sorted({type(m).__name__ for m in model.modules()})
            raise ConfigError(
                f"parallelism.wrap: no module of class {', '.join(sorted(missing))} in the "
                f"model; its module classes are: {', '.join(present)}"
            )
        return blocks
    blocks = []
    for module in model.modules():
        if isinstance(module, nn.ModuleList):
            blocks.extend(module)
    return blocks


MODES = ("full", "selective")


def _saved_by_selective() -> set[Any]:
    """The operators whose outputs selective checkpointing keeps: matrix products and
    attention (expensive to recompute); everything else (norms, activations, rotary
    positions, residual adds: cheap, memory-bound) is recomputed in backward."""
    aten = torch.ops.aten
    names = (
        "mm",
        "addmm",
        "bmm",
        "_scaled_mm",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_flash_attention_for_cpu",
    )
    return {getattr(aten, name).default for name in names if hasattr(aten, name)}


def _selective_context() -> Any:
    from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

    saved = _saved_by_selective()

    def policy(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
        if op in saved:
            return CheckpointPolicy.MUST_SAVE
        return CheckpointPolicy.PREFER_RECOMPUTE

    return create_selective_checkpoint_contexts(policy)


def checkpoint_activations(block: nn.Module, mode: str = "full") -> None:
    """Recompute `block`'s activations in backward instead of storing them (saves memory):
    all of them (`full`), or all but the outputs of matrix products and attention
    (`selective`: most of full's saving on the cheap operations, little recompute)."""
    from torch.utils.checkpoint import checkpoint

    if mode not in MODES:
        raise ConfigError(f"activation_checkpointing: {mode!r}; accepted: true, false, {MODES}")
    forward = block.forward
    extra = {"context_fn": _selective_context} if mode == "selective" else {}

    def checkpointed(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, **extra, **kwargs)

    block.forward = checkpointed  # type: ignore[method-assign]


def apply_activation_checkpointing(
    model: nn.Module, wrap: Sequence[str] | None = None, mode: str = "full"
) -> int:
    """Checkpoint every repeated block of `model` (`mode` full or selective); returns how many
    (an error if none)."""
    blocks = find_blocks(model, wrap)
    if not blocks:
        raise ConfigError(
            f"activation_checkpointing: {model_name(model)} has no repeated blocks (members "
            "of an nn.ModuleList) to recompute; name the block classes in parallelism.wrap or "
            "switch activation_checkpointing off"
        )
    for block in blocks:
        checkpoint_activations(block, mode)
    return len(blocks)


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """Members of every `nn.ModuleList` in `model` that holds 2+ modules of a single class."""
    blocks: list[nn.Module] = []
    for module in model.modules():
        repeated = isinstance(module, nn.ModuleList) and len(module) > 1
        if repeated and len({type(child) for child in module}) == 1:
            blocks.extend(module)
    return blocks
