"""The run file: one YAML that describes a whole training run, validated by pydantic.

Field descriptions double as documentation (`docs/config.md` lists them). Sections whose fields
depend on a name (`model`, `data`, `algorithms`, `callbacks`, `loggers`) are validated against
the registered component's own schema when the run is built.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tessera.core.time import Time


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_time(value: Any, field: str) -> Any:
    if value is not None:
        Time.coerce(value, field)
    return value


class OptimizerConfig(StrictModel):
    name: Literal["sgdw", "adamw", "sgd", "adam"] = Field("sgdw", description="optimizer")
    lr: float = Field(0.1, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0, description="weight decay (decoupled for sgdw/adamw)")
    momentum: float | None = Field(None, ge=0, lt=1, description="momentum (SGD family)")
    nesterov: bool | None = Field(None, description="Nesterov momentum (SGD family)")
    betas: tuple[float, float] | None = Field(None, description="Adam betas")
    eps: float | None = Field(None, gt=0, description="Adam epsilon")
    decay_norm_and_bias: bool = Field(False, description="also decay 1-D params (norms, biases)")
    foreach: bool | None = Field(None, description="use the multi-tensor (foreach) kernels")


class SchedulerConfig(StrictModel):
    name: Literal[
        "constant",
        "linear_warmup",
        "linear",
        "cosine_warmup",
        "step",
        "multistep",
        "polynomial",
        "inverse_sqrt",
    ] = Field("cosine_warmup", description="learning-rate schedule")
    t_warmup: str | int | None = Field(None, description="warm-up length (Time)")
    t_max: str | None = Field(None, description="end of the decay (Time, default 1dur)")
    alpha_f: float | None = Field(None, ge=0, description="final lr multiplier")
    step_size: str | int | None = Field(None, description="step schedule: time between drops")
    milestones: list[str | int] | None = Field(None, description="multistep: drop times")
    gamma: float | None = Field(None, gt=0, description="step/multistep: drop factor")
    power: float | None = Field(None, gt=0, description="polynomial: exponent")
    factor: float | None = Field(None, gt=0, description="constant: lr multiplier")

    @field_validator("t_warmup", "t_max", "step_size")
    @classmethod
    def _time(cls, value: Any, info: Any) -> Any:
        return _check_time(value, f"scheduler.{info.field_name}")


class ParallelismConfig(StrictModel):
    """Multi-process training (see docs/distributed.md); ignored by a single process."""

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
    param_dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="fsdp mixed precision: dtype of gathered weights for compute"
    )
    reduce_dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="fsdp mixed precision: dtype of gradient reduction"
    )
    cpu_offload: bool = Field(False, description="fsdp: keep sharded weights on the CPU")
    activation_checkpointing: bool = Field(
        False, description="fsdp: recompute each wrapped block's activations in backward"
    )
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
                name
                for name in _FSDP_FIELDS
                if getattr(self, name) != getattr(defaults, name, None)
            ]
            if misplaced:
                raise ValueError(
                    f"{', '.join(misplaced)} only apply to strategy 'fsdp'; set "
                    "parallelism.strategy: fsdp or remove them"
                )
        return self


_FSDP_FIELDS = (
    "sharding",
    "shard_group_size",
    "reshard_after_forward",
    "param_dtype",
    "reduce_dtype",
    "cpu_offload",
    "activation_checkpointing",
    "wrap",
    "async_checkpoint",
)


class RunConfig(StrictModel):
    """A training run."""

    name: str = Field("run", min_length=1, description="run name; the run folder is run_dir/name")
    run_dir: str = Field("runs", description="folder that holds run folders")
    seed: int = Field(42, ge=0, description="seed for every random generator")
    deterministic: bool = Field(False, description="deterministic kernels (bit-exact resume)")
    max_duration: str | int = Field(..., description="training length (Time: '2ep', '1000ba')")
    eval_interval: str | int = Field("1ep", description="evaluate every (Time)")
    save_interval: str | int | None = Field("1ep", description="checkpoint every (Time)")
    keep_last: int | None = Field(2, ge=1, description="checkpoints kept (None keeps all)")
    autoresume: bool = Field(True, description="continue from the newest valid checkpoint")
    load_path: str | None = Field(None, description="checkpoint to start from")
    precision: Literal["fp32", "amp_bf16", "amp_fp16"] = Field("fp32", description="precision")
    device: str | None = Field(None, description="cpu, cuda, cuda:1, mps (default: best found)")
    device_train_microbatch_size: int | Literal["auto"] | None = Field(
        None, description="samples per forward/backward; 'auto' halves on out-of-memory"
    )
    scale_schedule_ratio: float = Field(
        1.0, gt=0, description="stretch (>1) or shrink (<1) the run and its schedules"
    )
    profile: bool = Field(False, description="time every hook at every event")
    model: dict[str, Any] = Field(..., description="model: {name: ..., fields of that model}")
    data: dict[str, Any] = Field(..., description="data: {name: ..., fields of that data set}")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig | None = Field(default_factory=SchedulerConfig)
    algorithms: dict[str, dict[str, Any] | None] = Field(
        default_factory=dict, description="speed-up methods: {name: {arguments}}"
    )
    callbacks: dict[str, dict[str, Any] | None] = Field(
        default_factory=lambda: {"speed_monitor": {}, "lr_monitor": {}},
        description="callbacks: {name: {arguments}}",
    )
    loggers: dict[str, dict[str, Any] | None] = Field(
        default_factory=lambda: {"progress": {}, "jsonl": {}},
        description="loggers: {name: {arguments}}",
    )
    parallelism: ParallelismConfig = Field(
        default_factory=ParallelismConfig,
        description="multi-process settings (see docs/distributed.md)",
    )

    @field_validator("max_duration", "eval_interval", "save_interval")
    @classmethod
    def _time(cls, value: Any, info: Any) -> Any:
        return _check_time(value, info.field_name)

    @field_validator("model", "data")
    @classmethod
    def _named(cls, value: dict[str, Any], info: Any) -> dict[str, Any]:
        if "name" not in value:
            raise ValueError(f"{info.field_name} needs a 'name' field")
        return value
