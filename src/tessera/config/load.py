"""Loading a run file: YAML, `key=value` overrides, validation, and errors a person can act on.

Every problem in a file is reported at once, each naming the field (`model.width`), the value
given and what would be accepted; unknown keys come with the closest valid names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tessera.config.run_file import apply_overrides, load_yaml
from tessera.config.schema import MOVED, RunConfig
from tessera.core.component import validate_options
from tessera.core.errors import ConfigError, did_you_mean


def _section_problems(
    schema: type[BaseModel], values: Any, field: str
) -> tuple[BaseModel | None, list[str]]:
    return validate_options(schema, values, field)


def _moved_keys(raw: dict[str, Any]) -> list[str]:
    problems = []
    for old, new in MOVED.items():
        section, _, key = old.partition(".")
        values = raw.get(section)
        if isinstance(values, dict) and key in values:
            problems.append(f"{old}: this key has moved; use {new}")
    return problems


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a recipe, apply overrides and validate the whole run configuration."""
    raw = load_yaml(path) if path is not None else {}
    raw = apply_overrides(raw, overrides or [])
    return validate_config(raw, source=str(path) if path else "the command line")


def validate_config(raw: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate the run and every component section, reporting every problem at once."""
    from tessera.algorithms.registry import ALGORITHMS
    from tessera.callbacks.registry import CALLBACKS
    from tessera.data.registry import DATASETS
    from tessera.loggers.registry import LOGGERS
    from tessera.models.registry import MODELS

    problems = _moved_keys(raw)
    config, found = _section_problems(RunConfig, raw, "")
    problems += [line.removeprefix(".") for line in found]
    named: dict[str, BaseModel] = {}
    for field, registry in (("model", MODELS), ("data", DATASETS)):
        values = raw.get(field)
        accepted = ", ".join(registry.names())
        name = values.get("name") if isinstance(values, dict) else None
        if isinstance(name, str) and name in registry:
            section, found = registry.validate(name, values, field)
            problems += found
            if section is not None:
                named[field] = section
        elif isinstance(values, dict) and "name" not in values:
            problems.append(f"{field}.name: required; accepted: {accepted}")
        elif isinstance(values, dict):
            kind = registry.kind.rstrip("s")
            why = (
                f"not a {kind} of this installation; {did_you_mean(name, registry.names())}"
                if isinstance(name, str)
                else f"not a name; accepted: {accepted}"
            )
            problems.append(f"{field}.name: {name!r} is not accepted: {why}")
        elif field in raw:
            problems.append(
                f"{field}: {values!r} is not accepted: expected a mapping such as "
                f"{{name: {registry.names()[0]}, ...}} (accepted names: "
                f"{', '.join(registry.names())})"
            )
    mappings: dict[str, dict[str, BaseModel]] = {}
    for field, registry in (
        ("algorithms", ALGORITHMS),
        ("callbacks", CALLBACKS),
        ("loggers", LOGGERS),
    ):
        if field in raw:
            spec = raw[field]
            if isinstance(spec, dict):  # a moved key is reported once, above
                spec = {k: v for k, v in spec.items() if f"{field}.{k}" not in MOVED}
            mappings[field], found = registry.validate_mapping(spec)
            problems += found
    problems = list(dict.fromkeys(problems))  # a problem seen by two checks is listed once
    if problems or config is None:
        raise ConfigError(f"invalid configuration in {source}:\n  " + "\n  ".join(problems))
    assert isinstance(config, RunConfig)
    for field, section in named.items():
        setattr(config, field, section)
    for field, registry in (("callbacks", CALLBACKS), ("loggers", LOGGERS)):
        if field not in mappings:  # the defaults, validated like any section
            mappings[field], _ = registry.validate_mapping(getattr(config, field))
    mappings.setdefault("algorithms", {})
    for field, sections in mappings.items():
        setattr(config, field, sections)
    return config
