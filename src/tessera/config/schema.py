"""The run file: one YAML that describes a whole training run.

Its top-level fields are the trainer's settings (`tessera.trainer.settings.TrainerSettings`,
where each default is written once); its sections name components whose options are declared
beside their code: `model` and `data` (`{name: ..., options}`), `optimizer`, `scheduler`,
and the `{name: {options}}` mappings `algorithms`, `callbacks`, `loggers`. Loading validates
every section against its component's own config (`tessera.config.load`).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from tessera.core.precision import Precision
from tessera.core.time import TimeUnit
from tessera.optim.optimizers import OptimizerConfig
from tessera.optim.schedulers import SchedulerConfig
from tessera.trainer.settings import DEFAULT_CALLBACKS, DEFAULT_LOGGERS, TrainerSettings

# Keys that moved, with where they live now (an old recipe gets an error naming the new key).
MOVED = {
    "algorithms.compile": "compile (a top-level section: compile: {scope: blocks})",
    "algorithms.low_precision_layernorm": "algorithms.low_precision_norm",
    "model.activation_checkpointing": "activation_checkpointing (a top-level switch)",
    "parallelism.activation_checkpointing": "activation_checkpointing (a top-level switch)",
}


class RunConfig(TrainerSettings):
    """A training run: the trainer's settings plus the components it is made of."""

    model: Any = Field(..., description="model: {name: ..., options of that model}")
    data: Any = Field(..., description="data: {name: ..., options of that data set}")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig | None = Field(default_factory=SchedulerConfig)
    algorithms: dict[str, Any] = Field(
        default_factory=dict, description="speed-up methods: {name: {options}}"
    )
    callbacks: dict[str, Any] = Field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_CALLBACKS.items()},
        description="callbacks: {name: {options}} (false switches a default one off)",
    )
    loggers: dict[str, Any] = Field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_LOGGERS.items()},
        description="loggers: {name: {options}} (false switches a default one off)",
    )

    def cross_field_problems(self) -> list[str]:
        problems = super().cross_field_problems()
        if "sam" in self.algorithms and self.precision == Precision.AMP_FP16:
            problems.append(
                "algorithms.sam: SAM's two-pass step cannot run under the fp16 gradient scaler; "
                "use precision: amp_bf16 or fp32, or remove sam"
            )
        if self.scheduler is not None:
            position = "tok" if self.max_duration.unit == TimeUnit.TOKEN else "ba"
            for time in self.scheduler.times():
                unit = time.unit.value
                if unit == "dur":
                    continue
                if (position == "tok") != (unit == "tok"):
                    problems.append(
                        f"scheduler: {time} cannot be placed in a run whose max_duration is "
                        f"{self.max_duration} (schedules count in "
                        f"{'tokens' if position == 'tok' else 'batches'}); give it in "
                        f"{'tok' if position == 'tok' else 'ep, ba or sp'} or as a fraction ('dur')"
                    )
        return problems
