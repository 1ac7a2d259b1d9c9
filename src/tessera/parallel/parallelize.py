"""`parallelize`: the one place where a model is prepared for scale, in one documented order.

1. model surgery: done before, by the methods that change modules (at the INIT event);
2. activation checkpointing of the repeated blocks (recompute in backward, save memory:
   `full`, or `selective`, which keeps matrix products' and attention's outputs);
3. `torch.compile` (sees the final modules and the checkpointed blocks);
4. the data-parallel engine: FSDP2 `fully_shard` (each block, then the root) or DDP.

Compile goes after checkpointing so the recomputation is compiled too, and before the wrapper
so DDP's and FSDP's communication hooks stay outside the compiled graph. The result also says
how to skip gradient synchronisation on all but the last microbatch, which differs by wrapper:
DDP's `no_sync()` and FSDP2's `set_requires_gradient_sync(False)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tessera.core.errors import ConfigError
from tessera.parallel.blocks import apply_activation_checkpointing
from tessera.parallel.compile import compile_model
from tessera.parallel.config import CompileConfig, ParallelismConfig
from tessera.parallel.process_group import ProcessInfo

SINGLE_PROCESS = ProcessInfo(0, 1, 0, 1, torch.device("cpu"), None)


@dataclass
class Parallelized:
    """The model to train and how to switch its gradient synchronisation off and on."""

    model: nn.Module
    strategy: str | None = None  # "ddp", "fsdp" or None (one process, not sharded)
    _sync_switch: Callable[[bool], Any] | None = field(default=None, repr=False)

    @property
    def sharded(self) -> bool:
        return self.strategy == "fsdp"

    @contextlib.contextmanager
    def gradient_sync(self, enabled: bool) -> Iterator[None]:
        """Inside, backward reduces gradients across ranks only if `enabled` (no-op alone)."""
        if enabled or self._sync_switch is None:
            yield
            return
        with self._sync_switch(False):
            yield


def parallelize(
    model: nn.Module,
    parallelism: ParallelismConfig | None = None,
    *,
    activation_checkpointing: bool | str = False,
    compile: CompileConfig | None = None,
    info: ProcessInfo = SINGLE_PROCESS,
    optimizers: Sequence[torch.optim.Optimizer] = (),
) -> Parallelized:
    """Apply steps 2-4 to `model` (in place where the engines allow); see the module doc."""
    parallelism = parallelism or ParallelismConfig()
    if activation_checkpointing:
        mode = "full" if activation_checkpointing is True else str(activation_checkpointing)
        apply_activation_checkpointing(model, parallelism.wrap, mode)
    if compile is not None:
        compile_model(model, compile)
    if info.backend is None:
        if parallelism.strategy == "fsdp":
            raise ConfigError("parallelism.strategy: 'fsdp' needs a process group; none was made")
        return Parallelized(model)
    if parallelism.strategy == "fsdp":
        from tessera.parallel.fsdp import apply_fsdp, make_mesh, rebind_optimizers

        before = dict(model.named_parameters())
        mesh = make_mesh(info.device, parallelism.sharding, parallelism.shard_group_size)
        apply_fsdp(model, mesh, parallelism)
        rebind_optimizers(optimizers, before, model)
        return Parallelized(model, "fsdp", _fsdp_sync(model))
    if info.world_size == 1:
        return Parallelized(model)
    from tessera.parallel.ddp import wrap_ddp

    wrapped = wrap_ddp(
        model, info.device, parallelism.find_unused_parameters, parallelism.bucket_cap_mb
    )
    return Parallelized(wrapped, "ddp", lambda enabled: wrapped.no_sync())


def _fsdp_sync(model: nn.Module) -> Callable[[bool], Any]:
    @contextlib.contextmanager
    def switch(enabled: bool) -> Iterator[None]:
        model.set_requires_gradient_sync(enabled)  # type: ignore[operator]
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)  # type: ignore[operator]

    return switch
