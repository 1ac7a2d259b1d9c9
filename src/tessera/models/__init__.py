"""Models: a plain module plus its loss (`ModuleWithLoss`), vision networks, the GPT family."""

from tessera.models.module_with_loss import ModuleWithLoss
from tessera.models.registry import MODELS, model_names

__all__ = ["MODELS", "ModuleWithLoss", "model_names"]
