"""The Trainer: a whole run from Python (the same run a recipe describes)."""

from tessera.trainer.settings import DEFAULT_CALLBACKS, DEFAULT_LOGGERS, TrainerSettings
from tessera.trainer.trainer import Trainer

__all__ = ["DEFAULT_CALLBACKS", "DEFAULT_LOGGERS", "Trainer", "TrainerSettings"]
