"""Run configuration: the YAML schema, loading with overrides, and the builders of a run."""

from tessera.config.load import apply_overrides, load_config, load_yaml, validate_config
from tessera.config.schema import RunConfig

__all__ = ["RunConfig", "apply_overrides", "load_config", "load_yaml", "validate_config"]
