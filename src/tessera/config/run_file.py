"""Reading a run file: its YAML (UTF-8, no binary) and `key=value` overrides on top.

Kept apart from the schema so that commands with settings of their own (`tessera data clean`)
read YAML and overrides without importing the run schema and, through it, torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tessera.config.yaml_values import read_yaml
from tessera.core.errors import ConfigError


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
