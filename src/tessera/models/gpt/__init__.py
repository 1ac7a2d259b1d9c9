"""The GPT family: decoder-only transformers from a few hundred thousand parameters to ~7B."""

from tessera.models.gpt.cache import KVCache
from tessera.models.gpt.config import PRESETS, GPTConfig
from tessera.models.gpt.model import GPT

__all__ = ["GPT", "PRESETS", "GPTConfig", "KVCache"]
