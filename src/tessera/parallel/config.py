"""Settings of the scale-out step: the data-parallel engine, activation checkpointing, compile.

Each default is written here once; the trainer's keywords and the recipe's sections
(`parallelism:`, `activation_checkpointing:`, `compile:`) are these classes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tessera.core.component import ComponentConfig
from tessera.core.errors import did_you_mean

DType = Literal["float32", "bfloat16", "float16"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


class ParallelismConfig(ComponentConfig):
    """Multi-process training (docs/distributed.md); a single process ignores it, except that
    strategy 'fsdp' shards even one process (useful to test a sharded run on one machine)."""

    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp", description="ddp: replicate the model; fsdp: shard it with FSDP2 fully_shard"
    )
    backend: Literal["auto", "nccl", "gloo"] = Field(
        "auto", description="collective backend (auto: nccl on GPUs, gloo on CPUs)"
    )
    timeout: float = Field(
        600.0, gt=0, description="seconds a collective waits for the other ranks before failing"
    )
    find_unused_parameters: bool = Field(False, description="ddp: allow unused parameters")
    bucket_cap_mb: float = Field(25.0, gt=0, description="ddp: gradient bucket size (MB)")
    sharding: Literal["full", "hybrid"] = Field(
        "full", description="fsdp: shard over all ranks, or hybrid (shard in a node, replicate)"
    )
    shard_group_size: int | None = Field(
        None, ge=1, description="fsdp hybrid: ranks per shard group (default: one node's)"
    )
    reshard_after_forward: bool = Field(
        True, description="fsdp: free gathered weights after forward (less memory, more comms)"
    )
    param_dtype: DType | None = Field(
        None,
        description="fsdp: dtype the gathered weights compute in (default: as stored); must "
        "agree with `precision` (bfloat16 needs amp_bf16, float16 needs amp_fp16)",
    )
    reduce_dtype: DType | None = Field(
        None, description="fsdp: dtype gradients are reduced in (default: the param dtype)"
    )
    cpu_offload: bool = Field(False, description="fsdp: keep sharded weights on the CPU")
    wrap: list[str] | None = Field(
        None, description="fsdp: module class names to shard as units (default: ModuleList items)"
    )
    async_checkpoint: bool = Field(
        False, description="fsdp: write checkpoints in the background (DCP async_save)"
    )

    @model_validator(mode="after")
    def _fsdp_only(self) -> ParallelismConfig:
        if self.strategy == "ddp":
            defaults = ParallelismConfig.model_construct()
            misplaced = [
                name for name in FSDP_FIELDS if getattr(self, name) != getattr(defaults, name)
            ]
            if misplaced:
                raise ValueError(
                    f"{', '.join(misplaced)} only apply to strategy 'fsdp'; set "
                    "parallelism.strategy: fsdp or remove them"
                )
        return self


FSDP_FIELDS = (
    "sharding",
    "shard_group_size",
    "reshard_after_forward",
    "param_dtype",
    "reduce_dtype",
    "cpu_offload",
    "wrap",
    "async_checkpoint",
)


class CompileConfig(ComponentConfig):
    """`torch.compile` (graph capture + fused kernels), applied after activation checkpointing
    and before DDP/FSDP. The first batches pay the compile time."""

    scope: Literal["model", "blocks"] = Field(
        "model",
        description="model: compile the whole model; blocks: compile each repeated block "
        "(identical blocks share one graph: much faster to compile, no fusion across blocks)",
    )
    mode: CompileMode = Field("default", description="inductor mode")
    backend: str = Field("inductor", min_length=1, description="torch.compile backend")
    dynamic: bool | None = Field(None, description="dynamic shapes (None: decide on recompile)")

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, backend: str) -> str:
        import torch._dynamo

        known = set(torch._dynamo.list_backends(exclude_tags=())) | {"inductor"}
        if backend not in known:
            raise ValueError(f"unknown backend; {did_you_mean(backend, known)}")
        return backend
