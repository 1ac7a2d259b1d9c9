"""Models: adapters for plain modules, vision networks, the GPT family, and a registry."""

from tessera.models.adapters import ModuleAdapter
from tessera.models.registry import model_entry, model_names, register_model

__all__ = ["ModuleAdapter", "model_entry", "model_names", "register_model"]
