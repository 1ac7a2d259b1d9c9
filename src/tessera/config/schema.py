"""The run file: one YAML that describes a whole training run, validated by pydantic.

Field descriptions double as documentation (`docs/config.md` lists them). Sections whose fields
depend on a name (`model`, `data`, `algorithms`, `callbacks`, `loggers`) are validated against
the registered component's own schema when the run is built.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
    parallelism: dict[str, Any] | None = Field(
        None, description="multi-process settings (see docs/distributed.md)"
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
