"""Optimizers with decoupled weight decay and learning-rate schedules in training time."""

from tessera.optim.optimizers import OPTIMIZERS, SGDW, AdamW, parameter_groups
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
    Step,
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
    "Polynomial",
    "Schedule",
    "ScheduledLR",
    "Step",
    "parameter_groups",
]
