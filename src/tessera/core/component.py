"""Components configured by one pydantic model, `Config`, declared beside their code.

A method, callback or logger subclasses `Configurable` and names its options once, as fields of
its `Config` (type, default, range, description). The same validation runs for
`BlurPool(min_channels=8)` in Python and for `algorithms: {blurpool: {min_channels: 8}}` in a
recipe, so a default is written in one place and a bad value gets the same message everywhere:
the field, the value given and what is accepted, every problem at once.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from tessera.core.errors import ConfigError, did_you_mean
from tessera.core.values import bool_for_number, unusable_scalar


class ComponentConfig(BaseModel):
    """Base of every component's options: unknown keys refused, defaults and changes checked.

    What no option of any component accepts is refused here, once, for every field (nested
    lists and mappings too): infinity and NaN (a field that wants them says
    `Field(allow_inf_nan=True)`), true/false where a number goes, integers beyond 64 bits,
    empty or blank strings, and strings holding control or invisible characters
    (`tessera.core.values`).
    """

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        validate_default=True,
        allow_inf_nan=False,
        str_min_length=1,
        coerce_numbers_to_str=True,  # `name: 2024` is the text "2024"
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        return _checked(cls, value, info, bool_for_number)

    @field_validator("*", mode="after")
    @classmethod
    def _usable_scalars(cls, value: Any, info: ValidationInfo) -> Any:
        return _checked(cls, value, info, unusable_scalar)


def _checked(schema: type[BaseModel], value: Any, info: ValidationInfo, problem_of: Any) -> Any:
    """`value`, or a ValueError saying `problem_of(value, the field's type)`."""
    field = schema.__pydantic_fields__.get(info.field_name or "")
    problem = problem_of(value, field.annotation) if field is not None else None
    if problem:
        raise ValueError(problem)
    return value


def validation_problems(
    error: ValidationError, schema: type[BaseModel], prefix: str = ""
) -> list[str]:
    """One line per problem: the field's dotted path, the value given and what is accepted."""
    lines = []
    for problem in _one_per_union(error.errors()):
        location = [str(part) for part in problem["loc"]]
        field = (prefix + ".".join(location)).rstrip(".")  # a model validator has no location
        kind = problem["type"]
        if kind == "extra_forbidden":
            parent = schema_at(schema, location[:-1])
            names = list(parent.model_fields) if parent else []
            hint = did_you_mean(location[-1], names) if names else "it takes no options."
            lines.append(f"{field}: unknown key; {hint}")
        elif kind == "missing" and location and location[-1].isdigit():  # a tuple too short
            parent = field.rsplit(".", 1)[0]
            lines.append(
                f"{parent}: {problem.get('input')!r} is not accepted: it needs an item "
                f"{location[-1]} (counting from 0)"
            )
        elif kind == "missing":
            lines.append(f"{field}: required field is missing")
        elif kind == "value_error" and schema_at(schema, location) is not None:
            # A check across fields (a model validator): its message names the fields.
            message = problem["msg"].removeprefix("Value error, ")
            where = field or prefix.rstrip(".")
            for line in message.split("\n"):
                lines.append(f"{where}: {line}" if where and not line.startswith(where) else line)
        else:
            message = problem["msg"].removeprefix("Value error, ")
            where = field or prefix.rstrip(".") or "value"
            lines.append(f"{where}: {problem.get('input')!r} is not accepted: {message}")
    return lines


def _is_union_tag(part: Any) -> bool:
    """Pydantic names the alternative of a union it tried (`list[constrained-int]`, `int`)."""
    text = str(part)
    return any(mark in text for mark in "[]-") or text in _TYPE_TAGS


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "tuple", "none"}


def _one_per_union(problems: list[Any]) -> list[Any]:
    """A value that fits no alternative of a union is one problem, not one per alternative:
    located at the field, with the given value and every alternative's complaint."""
    merged: dict[tuple, dict[str, Any]] = {}
    out: list[Any] = []
    for problem in problems:
        loc = problem["loc"]
        cut = next((i for i, part in enumerate(loc) if _is_union_tag(part)), None)
        if cut is None:
            out.append(problem)
            continue
        key = tuple(loc[:cut])
        message = problem["msg"].removeprefix("Value error, ")
        entry = merged.get(key)
        if entry is None:
            entry = {"loc": key, "type": "union", "msg": message, "input": problem.get("input")}
            merged[key] = entry
            out.append(entry)
        elif message not in entry["msg"]:
            entry["msg"] += f"; or {message[:1].lower()}{message[1:]}"
        if len(loc) == cut + 1:  # the alternative tried on the whole value: show that value
            entry["input"] = problem.get("input")
    return out


def schema_at(schema: type[BaseModel], path: list[str]) -> type[BaseModel] | None:
    """The nested config class at a dotted path of field names, if there is one."""
    current: Any = schema
    for part in path:
        fields = getattr(current, "model_fields", None)
        field = fields.get(part) if fields else None
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


def validate_options(
    schema: type[BaseModel], options: Any, where: str = ""
) -> tuple[BaseModel | None, list[str]]:
    """Validate `options` (a mapping or a config instance) against `schema`; (config, problems)."""
    if isinstance(options, schema):
        return options, []
    if isinstance(options, BaseModel):
        options = options.model_dump()
    if options is None:
        options = {}
    prefix = f"{where}." if where else ""
    if not isinstance(options, dict):
        return None, [
            f"{where or schema.__name__}: expected a mapping of options, got "
            f"{type(options).__name__} {options!r}"
        ]
    try:
        return schema.model_validate(options), []
    except ValidationError as error:
        return None, validation_problems(error, schema, prefix)


def build_config(schema: type[BaseModel], options: Any, where: str = "") -> BaseModel:
    """`schema` validated from `options`, or one ConfigError listing every problem."""
    config, problems = validate_options(schema, options, where)
    if config is None:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return config


class Configurable:
    """A component whose options are `self.config`, an instance of its class's `Config`.

    Build it with keyword options (`LabelSmoothing(smoothing=0.1)`) or a ready config
    (`LabelSmoothing(LabelSmoothingConfig(smoothing=0.1))`). Subclasses that keep more state
    override `__init__(self, config=None, /, **options)` and call `super().__init__` first.
    """

    Config: ClassVar[type[ComponentConfig]] = ComponentConfig
    config: Any

    def __init__(self, config: ComponentConfig | None = None, /, **options: Any) -> None:
        if config is not None and options:
            raise ConfigError(
                f"{type(self).__name__}: give either a config or keyword options, not both"
            )
        given = config if config is not None else options
        self.config = build_config(self.Config, given, self.config_name())

    @classmethod
    def config_name(cls) -> str:
        """How errors name this component's options (the registry name where there is one)."""
        return getattr(cls, "name", "") or cls.__name__

    @classmethod
    def from_config(cls, config: BaseModel, **context: Any) -> Configurable:
        """Build from a validated config; `context` carries what the run supplies (unused here)."""
        return cls(config)

    def __repr__(self) -> str:
        config = getattr(self, "config", None)
        values = config.model_dump() if isinstance(config, BaseModel) else {}
        fields = ", ".join(f"{k}={v!r}" for k, v in values.items())
        return f"{type(self).__name__}({fields})"
