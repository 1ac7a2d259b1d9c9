"""Loading a run file: YAML, `key=value` overrides, validation, and errors a person can act on.

Every problem in a file is reported at once, each naming the field (`model.width`), the value
given and what would be accepted; unknown keys come with the closest valid names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tessera.config.schema import RunConfig
from tessera.core.errors import ConfigError, did_you_mean


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist (or is not a file)")
    try:
        data = yaml.safe_load(path.read_text())
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
        if not separator or not key:
            raise ConfigError(
                f"override {override!r} is not of the form key=value (e.g. max_duration=2ep, "
                "model.width=32)"
            )
        try:
            value = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            value = text
        target = config
        parts = key.split(".")
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


def describe_validation_error(
    error: ValidationError, schema: type[BaseModel], prefix: str = ""
) -> list[str]:
    """One line per problem: field path, value given, and what is accepted."""
    lines = []
    for problem in error.errors():
        location = [str(part) for part in problem["loc"]]
        field = prefix + ".".join(location)
        kind = problem["type"]
        value = problem.get("input")
        if kind == "extra_forbidden":
            parent = _schema_at(schema, location[:-1])
            names = list(parent.model_fields) if parent else []
            lines.append(f"{field}: unknown key; {did_you_mean(location[-1], names)}")
        elif kind == "missing":
            lines.append(f"{field}: required field is missing")
        else:
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"{field}: {value!r} is not accepted: {message}")
    return lines


def _schema_at(schema: type[BaseModel], path: list[str]) -> type[BaseModel] | None:
    current: Any = schema
    for part in path:
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if current is None:
            return None
    return current


def _section_problems(
    schema: type[BaseModel], values: Any, field: str
) -> tuple[BaseModel | None, list[str]]:
    try:
        return schema.model_validate(values), []
    except ValidationError as error:
        return None, describe_validation_error(error, schema, prefix=f"{field}.")


def validate_section(schema: type[BaseModel], values: dict[str, Any], field: str) -> BaseModel:
    """Validate a named component's section (model, data, ...) against its own schema."""
    section, problems = _section_problems(schema, values, field)
    if section is None:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return section


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a recipe, apply overrides and validate the whole run configuration."""
    raw = load_yaml(path) if path is not None else {}
    raw = apply_overrides(raw, overrides or [])
    return validate_config(raw, source=str(path) if path else "the command line")


def validate_config(raw: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate the run and its named sections, reporting every problem at once."""
    from tessera.data.registry import DATASETS
    from tessera.models.registry import MODELS

    config, problems = _section_problems(RunConfig, raw, "")
    problems = [line.removeprefix(".") for line in problems]
    sections = {}
    for field, registry in (("model", MODELS), ("data", DATASETS)):
        values = raw.get(field)
        if isinstance(values, dict) and isinstance(values.get("name"), str):
            sections[field], section_problems = registry.validate(values["name"], values, field)
            problems += section_problems
    if problems or config is None:
        raise ConfigError(f"invalid configuration in {source}:\n  " + "\n  ".join(problems))
    assert isinstance(config, RunConfig)
    config.model = sections["model"].model_dump()
    config.data = sections["data"].model_dump()
    return config
