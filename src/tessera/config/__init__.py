"""Run configuration: the YAML schema, loading with overrides, and the builders of a run."""

from tessera.core.lazy import lazy_getattr

__all__ = ["RunConfig", "apply_overrides", "load_config", "load_yaml", "validate_config"]
__getattr__ = lazy_getattr(
    __name__,
    {
        "RunConfig": "tessera.config.schema",
        "apply_overrides": "tessera.config.run_file",
        "load_yaml": "tessera.config.run_file",
        "load_config": "tessera.config.load",
        "validate_config": "tessera.config.load",
    },
)
