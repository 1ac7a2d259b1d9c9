"""The GPT family: decoder-only transformers from a few hundred thousand parameters to ~7B.

Importing this package registers the `gpt` model for recipes.
"""

from tessera.models.gpt import registration as _registration  # noqa: F401
from tessera.models.gpt.cache import KVCache
from tessera.models.gpt.checkpoint import load_gpt, save_gpt
from tessera.models.gpt.config import PRESETS, GPTConfig
from tessera.models.gpt.model import GPT

__all__ = ["GPT", "PRESETS", "GPTConfig", "KVCache", "load_gpt", "save_gpt"]
