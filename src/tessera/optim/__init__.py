"""Optimizers with decoupled weight decay and learning-rate schedules in training time."""

from tessera.optim.optimizers import (
    OPTIMIZERS,
    SGDW,
    AdamW,
    OptimizerConfig,
    parameter_groups,
    parameter_roles,
)
from tessera.optim.schedulers import (
    SCHEDULES,
    Constant,
    CosineWarmup,
    InverseSquareRoot,
    Linear,
    LinearWarmup,
    MultiStep,
    Polynomial,
    Schedule,
    ScheduledLR,
    SchedulerConfig,
    Step,
    WarmupStableDecay,
)

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "SGDW",
    "AdamW",
    "Constant",
    "CosineWarmup",
    "InverseSquareRoot",
    "Linear",
    "LinearWarmup",
    "MultiStep",
    "OptimizerConfig",
    "Polynomial",
    "Schedule",
    "ScheduledLR",
    "SchedulerConfig",
    "Step",
    "WarmupStableDecay",
    "parameter_groups",
    "parameter_roles",
]
