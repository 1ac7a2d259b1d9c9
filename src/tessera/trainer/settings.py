"""The run-level settings of a training run: each default written here, once.

`Trainer(...)`'s keywords take their defaults from `TrainerSettings`, and a recipe's top-level
fields are the same class (the run config extends it with the component sections), so a run
behaves the same from Python and from YAML. Cross-field checks live in the validator below and
fail before anything is built.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError
from tessera.core.precision import Precision
from tessera.core.time import TimeValue
from tessera.core.values import device_problem
from tessera.parallel.config import CompileConfig, ParallelismConfig

# The callbacks and loggers a run gets unless it says otherwise.
DEFAULT_CALLBACKS: dict[str, dict[str, Any]] = {"speed_monitor": {}, "lr_monitor": {}}
DEFAULT_LOGGERS: dict[str, dict[str, Any]] = {"progress": {}, "jsonl": {}}

_MAX_SEED = 2**63 - 1
_PARAM_DTYPE_PRECISION = {"bfloat16": Precision.AMP_BF16, "float16": Precision.AMP_FP16}


class TrainerSettings(ComponentConfig):
    """Everything about a run that is a setting rather than an object."""

    name: str = Field(
        "run", min_length=1, pattern=r"^[^/\\\x00]+$", description="run name; folder run_dir/name"
    )
    run_dir: str | None = Field(
        "runs", description="folder that holds run folders (None: no folder, no checkpoints)"
    )
    max_duration: TimeValue = Field(..., description="training length (Time: '2ep', '1000ba')")
    seed: int = Field(42, ge=0, le=_MAX_SEED, description="seed for every random generator")
    deterministic: bool = Field(False, description="deterministic kernels (bit-exact resume)")
    eval_interval: TimeValue = Field("1ep", description="evaluate every (Time)")
    save_interval: TimeValue | None = Field("1ep", description="checkpoint every (Time)")
    keep_last: int | None = Field(2, ge=1, description="checkpoints kept (None keeps all)")
    autoresume: bool | Literal["restart"] = Field(
        True,
        description="continue from the newest valid checkpoint; false: start from load_path or "
        "the beginning (in a folder without checkpoints); 'restart': move the earlier run's "
        "checkpoints, final model and metrics to replaced/ and start over",
    )
    load_path: str | None = Field(None, description="checkpoint to start from")
    precision: Precision = Field(Precision.FP32, description="fp32, amp_bf16 or amp_fp16")
    device: str | None = Field(None, description="cpu, cuda, cuda:1, mps (default: best found)")
    device_train_microbatch_size: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        None, description="samples per forward/backward; 'auto' halves on out-of-memory"
    )
    scale_schedule_ratio: float = Field(
        1.0, gt=0, le=1e6, description="stretch (>1) or shrink (<1) the run"
    )
    profile: bool = Field(False, description="time every hook at every event")
    parallelism: ParallelismConfig = Field(
        default_factory=ParallelismConfig, description="multi-process settings"
    )
    activation_checkpointing: bool | Literal["full", "selective"] = Field(
        False,
        description="recompute each repeated block's activations in backward: true or full "
        "(all of them), selective (all but matrix products' and attention's outputs), false",
    )
    compile: CompileConfig | None = Field(None, description="torch.compile (null: off)")

    @field_validator("activation_checkpointing")
    @classmethod
    def _full_when_true(cls, value: bool | str) -> bool | str:
        return "full" if value is True else value

    @model_validator(mode="after")
    def _consistent(self) -> TrainerSettings:
        problems = self.cross_field_problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def cross_field_problems(self) -> list[str]:
        """Every check across fields, in one place (subclasses add theirs)."""
        problems = []
        device = device_problem(self.device) if self.device is not None else None
        if device:
            problems.append(f"device: {self.device!r} is not accepted: {device}")
        dtype = self.parallelism.param_dtype
        needed = _PARAM_DTYPE_PRECISION.get(dtype or "")
        if needed is not None and self.precision != needed:
            problems.append(
                f"parallelism.param_dtype: {dtype!r} computes in {dtype} but precision is "
                f"{self.precision.value!r}; set precision: {needed.value} (or drop param_dtype)"
            )
        reduce = self.parallelism.reduce_dtype
        if reduce is not None and reduce not in ("float32", dtype):
            problems.append(
                f"parallelism.reduce_dtype: {reduce!r} must be float32 or the param_dtype"
            )
        try:
            self.max_duration * self.scale_schedule_ratio
        except ConfigError as error:
            ratio = self.scale_schedule_ratio
            problems.append(f"scale_schedule_ratio: {ratio:g} makes max_duration {error}")
        if self.eval_interval.value == 0:
            problems.append("eval_interval: must be more than zero (leave out eval data for none)")
        if self.save_interval is not None and self.save_interval.value == 0:
            problems.append("save_interval: must be more than zero (null switches saving off)")
        return problems
