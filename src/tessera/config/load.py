"""Loading a run file: YAML, `key=value` overrides, validation, and errors a person can act on.

Every problem in a file is reported at once, each naming the field (`model.width`), the value
given and what would be accepted; unknown keys come with the closest valid names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from tessera.config.schema import MOVED, RunConfig
from tessera.config.yaml_values import read_yaml
from tessera.core.component import validate_options
from tessera.core.errors import ConfigError, did_you_mean


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist (or is not a file)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"recipe {path} is not UTF-8 text (byte {error.start} cannot be decoded); save it "
            "as UTF-8 YAML"
        ) from None
    if "\x00" in text:
        raise ConfigError(f"recipe {path} holds NUL bytes: it is a binary file, not YAML")
    try:
        data = read_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"recipe {path} is not valid YAML{where}: {problem}") from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"recipe {path} must be a mapping of fields (name: value), not a {type(data).__name__}"
        )
    return data


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key=value` and `a.b.c=value` overrides; values are parsed as YAML."""
    config = _deep_copy(config)
    for override in overrides:
        key, separator, text = override.partition("=")
        parts = key.split(".")
        if not separator or not all(part.strip() for part in parts):
            raise ConfigError(
                f"override {override!r} is not of the form key=value with a dotted key of "
                "non-empty names (e.g. max_duration=2ep, model.width=32)"
            )
        try:
            value = read_yaml(text) if text else None
        except yaml.YAMLError as error:
            if "given twice" in str(getattr(error, "problem", "")):
                raise ConfigError(f"override {override!r}: {error.problem}") from None
            value = text  # not YAML: the text itself (a field that wants more refuses it)
        target = config
        for part in parts[:-1]:
            child = target.get(part)
            if child is None:
                child = target[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {override!r}: {part!r} is not a section")
            target = child
        target[parts[-1]] = value
    return config


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_deep_copy(item) for item in value]
    return value


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
