"""Bad and boundary inputs generated from the config schemas themselves.

`sections()` walks the run file: the trainer's settings (and the models nested in them:
parallelism, compile, optimizer, scheduler) and every entry of every registry (model, data,
algorithms, callbacks, loggers). `cases(section)` reads each field's type and declared range
(`ge`, `lt`, `min_length`, ...) and makes override texts from them: wrong types, values just
outside and exactly on each bound, infinity and NaN, huge integers, hex/octal/sexagesimal
and other YAML-special spellings, blank strings, invisible characters, lists where a scalar
goes and the reverse, unknown keys. A field added tomorrow gets its cases the same way.
`run_cli(argv)` calls the real entry point in-process and returns what a user would see.
"""

from __future__ import annotations

import contextlib
import enum
import io
import math
import traceback
import zlib
from dataclasses import dataclass
from pathlib import PurePath
from typing import Annotated, Any, Literal, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from tessera.cli.main import main
from tessera.config.yaml_values import read_yaml
from tessera.core.time import Time
from tessera.core.values import MAX_INT
from tessera.core.values import type_alternatives as members

# A minimal valid run: every section below is laid over it.
BASE_RUN: dict[str, Any] = {
    "name": "fuzz",
    "max_duration": "4ba",
    "model": {"name": "resnet"},
    "data": {"name": "fashion_mnist"},
}
JUNK = ["\u200b", "\u202e", "\ufeff", "\x07", "\t"]  # zero-width, bidi override, BOM, BEL, tab
NON_FINITE = [".inf", "-.inf", ".nan", "1e400", "-1e400"]
SPELLINGS = ["0x10", "0o17", "0b101", "1:30", "10**3", "\uff11\uff12", "1e3x", "0x1p3", "1,000"]


def pick(options: list[str], key: str, count: int, every: bool) -> list[str]:
    """`count` of `options`, chosen by `key` (stable), or all of them when `every`: each field
    gets a few spellings of a kind of bad value, and every spelling is tried on some field."""
    if every:
        return list(options)
    start = zlib.crc32(key.encode()) % len(options)
    return [options[(start + step) % len(options)] for step in range(min(count, len(options)))]


@dataclass(frozen=True)
class Section:
    """Options validated by one schema, at `prefix` in the run file."""

    prefix: str  # "" (top level), "parallelism", "model", "algorithms.ema", ...
    schema: type[BaseModel]
    base: dict[str, Any]  # a valid run in which this section is present
    label: str  # unique: "run", "model.gpt", "model.gpt.lora", "algorithms.ema", ...


@dataclass(frozen=True)
class Case:
    key: str  # the dotted override key
    text: str  # the override's value, as typed after '='
    good: bool  # should the run file be accepted?
    why: str
    quotes_value: bool = True  # must a refusal quote the value? (not for an unknown key)


def registries() -> dict[str, Any]:
    """Every run-file section that names a component, with its registry."""
    from tessera.algorithms.registry import ALGORITHMS
    from tessera.callbacks.registry import CALLBACKS
    from tessera.data.registry import DATASETS
    from tessera.loggers.registry import LOGGERS
    from tessera.models.registry import MODELS

    return {
        "model": MODELS,
        "data": DATASETS,
        "algorithms": ALGORITHMS,
        "callbacks": CALLBACKS,
        "loggers": LOGGERS,
    }


def sections() -> list[Section]:
    """The run config, its nested models, and every registered component's config."""
    from tessera.config.schema import RunConfig

    found = list(_nested(Section("", RunConfig, BASE_RUN, "run")))
    for section, registry in registries().items():
        for name in registry.names():
            schema = registry.config_class(name)
            options = example_options(schema)
            base = dict(BASE_RUN)
            if section in ("model", "data"):
                base[section] = {**options, "name": name}
                prefix = section
            else:
                base[section] = {name: options}
                prefix = f"{section}.{name}"
            found += _nested(Section(prefix, schema, base, f"{section}.{name}"))
    return found


def _nested(section: Section) -> list[Section]:
    """`section` and every model-typed field inside it, each its own section."""
    found = [section]
    for name, field in section.schema.model_fields.items():
        for member in members(field.annotation):
            if _is_model(member):
                prefix = f"{section.prefix}.{name}".lstrip(".")
                label = f"{section.label}.{name}"
                found += _nested(Section(prefix, member, section.base, label))
    return found


def section_fields(section: Section) -> dict[str, FieldInfo]:
    """The fields this section's cases cover (the registry sections have their own)."""
    fields = dict(section.schema.model_fields)
    if section.prefix == "":
        for name in registries():
            fields.pop(name)
    return fields


def example_options(schema: type[BaseModel]) -> dict[str, Any]:
    """A valid set of options: the schema's declared example, or each required field's."""
    extra = schema.model_config.get("json_schema_extra")
    if isinstance(extra, dict) and extra.get("examples"):
        return dict(extra["examples"][0])
    options = {}
    for name, field in schema.model_fields.items():
        if field.is_required():
            if not field.examples:
                raise AssertionError(
                    f"{schema.__name__}.{name} is required but declares no `examples=[...]`; "
                    "the fuzzer (and the docs) need one valid value"
                )
            options[name] = field.examples[0]
    return options


# -- types ------------------------------------------------------------------------------------


def _bounds(annotation: Any, metadata: list[Any]) -> list[Any]:
    """Range constraints from field metadata and `Annotated[...]` items, flattened."""
    found = []
    items = list(metadata)
    if get_origin(annotation) is Annotated:
        items += list(get_args(annotation)[1:])
    for item in items:
        if isinstance(item, FieldInfo):
            found += _bounds(None, item.metadata)
        elif isinstance(item, (at.Ge, at.Gt, at.Le, at.Lt, at.MinLen, at.MaxLen)):
            found.append(item)
    return found


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _sequence(kind: Any) -> bool:
    return get_origin(kind) in (list, tuple, set, frozenset)


def _mapping(kind: Any) -> bool:
    return get_origin(kind) is dict


def _choices(kinds: list[Any]) -> list[Any]:
    found = []
    for kind in kinds:
        if get_origin(kind) is Literal:
            found += list(get_args(kind))
        elif isinstance(kind, type) and issubclass(kind, enum.Enum):
            found += [item.value for item in kind]
    return found


def _text(value: Any) -> str:
    """A value as one would type it in an override."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(item) for item in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


# -- cases ------------------------------------------------------------------------------------


def cases(section: Section, every: bool = False) -> dict[str, list[Case]]:
    """Every field's cases, by field name (plus '<unknown>' for keys that are no field);
    `every`: all spellings of each kind of bad value, not a few."""
    prefix = f"{section.prefix}." if section.prefix else ""
    found = {
        "<unknown>": [
            Case(f"{prefix}zz_no_such_option", "1", False, "an unknown key", False),
        ]
    }
    for name, field in section_fields(section).items():
        key = prefix + name
        good = _good_value(section, name)
        made = _field_cases(key, field.annotation, field.metadata, good, every)
        made.append(Case(f"{key}x", "1", False, f"a typo of {name}", False))
        found[name] = made
    return found


def _good_value(section: Section, name: str) -> Any:
    field = section.schema.model_fields[name]
    if field.examples:
        return field.examples[0]
    if not field.is_required() and field.default is not None:
        value = field.default
        return value.value if isinstance(value, enum.Enum) else value
    return None


def _field_cases(
    key: str, annotation: Any, metadata: list[Any], good: Any, every: bool = False
) -> list[Case]:
    kinds = members(annotation)
    made: list[Case] = []

    def bad(text: str, why: str) -> None:
        made.append(Case(key, text, False, why))

    def fine(text: str, why: str) -> None:
        made.append(Case(key, text, True, why))

    if any(kind in (Any, object) for kind in kinds):
        return made
    numbers = [kind for kind in kinds if kind in (int, float)]
    takes_bool = bool in kinds or any(isinstance(c, bool) for c in _choices(kinds))
    takes_str = any(
        kind is str or (isinstance(kind, type) and issubclass(kind, PurePath)) for kind in kinds
    )
    takes_time = any(kind is Time for kind in kinds)
    choices = [c for c in _choices(kinds) if isinstance(c, str)]
    sequences = [kind for kind in kinds if _sequence(kind)]
    mappings = [kind for kind in kinds if _mapping(kind)]
    scalar = numbers or takes_bool or takes_str or takes_time or choices

    if type(None) in kinds:
        fine("null", "null where None is allowed")
    else:
        bad("null", "null where a value is required")
    if not sequences:
        bad("[1, 2]", "a list where a scalar goes")
    if not mappings and not any(_is_model(kind) for kind in kinds):
        bad("{zz: 1}", "a mapping where a scalar or list goes")
    if (sequences or mappings) and not scalar:
        bad("7", "a number where a list or mapping goes")
        bad("word", "a word where a list or mapping goes")

    if numbers and not takes_bool:
        for text in pick(["true", "false"], key, 1, every):
            bad(text, "true/false where a number goes")
    if numbers and not takes_str:
        for text in pick(NON_FINITE, key, 2, every):
            bad(text, "a non-finite number")
        for text in pick(SPELLINGS, key, 3, every):
            bad(text, "a YAML-special or non-decimal spelling")
        if int in numbers and float not in numbers:
            bad("1.5", "a fraction where an integer goes")
            bad(str(10**30), "an integer beyond 64 bits")
            bad(str(MAX_INT + 1), "an integer just beyond 64 bits")
        made += _range_cases(key, annotation, metadata, numbers)

    if takes_bool and not numbers:
        for text in pick(["maybe", "2", "-1", "0.5", "'true\u200b'"], key, 3, every):
            bad(text, "not a boolean")
        fine("true", "a boolean")
        fine("false", "a boolean")

    if choices:
        for choice in choices:
            fine(_text(choice), "one of the choices")
        if not takes_str:
            first = choices[0]
            bad("bogus_choice", "not one of the choices")
            if first.upper() != first:
                bad(_text(first.upper()), "a choice in the wrong case")
            bad(_text(f" {first}"), "a choice with a leading space")
            bad(_text(first + "\u200b"), "a choice with a zero-width space")

    if takes_str and not choices:
        bad("''", "an empty string")
        bad("'   '", "a blank string")
        base = good if isinstance(good, str) else "value"
        for junk in pick([*JUNK, "\x00"], key, 2, every):
            text = base + junk if junk == "\x00" else _text(base + junk)  # NUL: not YAML
            bad(text, f"a string holding U+{ord(junk):04X}")
        if isinstance(good, (str, PurePath)):
            fine(_text(str(good)), "the default or example")

    if takes_time:
        for text in (
            "1e400ba",
            "1e30ba",
            "0x10ba",
            "-1ba",
            "1.5ba",
            "2dur",
            "nanba",
            "infba",
            "ep",
            "10parsec",
            "'10ep\u200b'",
            "\uff11\uff10ep",
            "[1ba]",
            "true",
            ".inf",
        ):
            bad(text, "not a time")
        for text in ("1ba", "1ep", "0.5dur", "1dur", "1sp", f"{MAX_INT}ba"):
            fine(text, "a time")
        bad(f"{MAX_INT + 1}ba", "a time just beyond 64 bits")

    for sequence in sequences:
        made += _sequence_cases(key, sequence, metadata, good, scalar)
    for mapping in mappings:
        made += _mapping_cases(key, mapping)
    for model in (kind for kind in kinds if _is_model(kind)):
        bad("[{zz: 1}]" if sequences else "{zz: 1}", f"an unknown key inside {model.__name__}")
        if sequences:
            bad("[{}]", f"an empty {model.__name__}")
    return made


# Each bound: its attribute, whether a value on it is accepted, and the direction of the value
# tried next to it (outside an inclusive bound, inside an exclusive one).
SIDES = {
    at.Ge: ("ge", True, -1),
    at.Gt: ("gt", False, 1),
    at.Le: ("le", True, 1),
    at.Lt: ("lt", False, -1),
}


def _range_cases(key: str, annotation: Any, metadata: list[Any], numbers: list[Any]) -> list[Case]:
    integer = int in numbers and float not in numbers
    made = []
    for bound in _bounds(annotation, metadata):
        if type(bound) not in SIDES:
            continue
        name, inclusive, step = SIDES[type(bound)]
        limit = getattr(bound, name)
        beside = limit + step if integer else math.nextafter(limit, step * math.inf)
        where = "beyond" if inclusive else "just inside"
        made += [
            Case(key, _text(limit), inclusive, f"on {name}={limit}"),
            Case(key, _text(beside), not inclusive, f"{where} {name}={limit}"),
        ]
    return made


def _item_good(item: Any, good: Any) -> Any:
    """A valid item for a sequence: from the field's default, else from the item's type."""
    if isinstance(good, (list, tuple)) and good:
        return good[0]
    kinds = members(item)
    choices = _choices(kinds)
    if choices:
        return choices[0]
    bounds = {type(b): b for b in _bounds(item, [])}
    low = getattr(bounds.get(at.Ge), "ge", None)
    if low is None and at.Gt in bounds:
        low = bounds[at.Gt].gt + (1 if int in kinds else 0.5)
    if int in kinds:
        return int(low) if low is not None else 1
    if float in kinds:
        return float(low) if low is not None else 0.5
    return None


def _sequence_cases(
    key: str, sequence: Any, metadata: list[Any], good: Any, scalar: bool
) -> list[Case]:
    args = get_args(sequence)
    fixed = get_origin(sequence) is tuple and args and args[-1] is not Ellipsis
    item = args[0] if args else Any
    made = []
    sample = _item_good(item, good)
    if fixed:
        goods = [_item_good(arg, None) for arg in args]
        if all(g is not None for g in goods):
            made.append(Case(key, _text(goods), True, "a tuple of valid items"))
            made.append(Case(key, _text(goods[:1]), False, "a tuple too short"))
            made.append(Case(key, _text(goods + goods[:1]), False, "a tuple too long"))
            for case in _field_cases(key, args[0], [], goods[0]):
                if not case.good and _scalar_text(case.text):
                    rest = ", ".join(_text(g) for g in goods[1:])
                    made.append(Case(key, f"[{case.text}, {rest}]", False, f"item: {case.why}"))
        return made
    lengths = {type(b): b for b in _bounds(None, metadata)}
    low = getattr(lengths.get(at.MinLen), "min_length", 0)
    high = getattr(lengths.get(at.MaxLen), "max_length", None)
    if low >= 1:
        made.append(Case(key, "[]", False, f"an empty list (min_length={low})"))
    if sample is not None:
        if high is not None:
            made.append(Case(key, _text([sample] * high), True, f"max_length={high} items"))
            made.append(Case(key, _text([sample] * (high + 1)), False, f"over max_length={high}"))
        if high is None or high >= 1:
            made.append(Case(key, _text([sample] * max(low, 1)), True, "a list of valid items"))
    for case in _field_cases(key, item, [], sample):
        if not case.good and _scalar_text(case.text):
            made.append(Case(key, f"[{case.text}]", False, f"item: {case.why}"))
    if not scalar:
        made.append(Case(key, "[[1]]", False, "a nested list"))
    return made


def _scalar_text(text: str) -> bool:
    """Can `text` stand as one item of a YAML flow list (`[text]`)?"""
    return not text.startswith(("[", "{")) and text != "null" and not set(text) & set("\x00,")


def _mapping_cases(key: str, mapping: Any) -> list[Case]:
    made = [Case(key, "{a: [1]}", False, "a list as a mapping's value")]
    value_kinds = members(get_args(mapping)[1]) if get_args(mapping) else [Any]
    if str in value_kinds:
        made += [
            Case(key, "{a: b}", True, "a mapping of text"),
            Case(key, "{a: ''}", False, "an empty value"),
            Case(key, "{'': b}", False, "an empty key"),
            Case(key, "{a: 'b\u200b'}", False, "a value with a zero-width space"),
        ]
    return made


# -- running ----------------------------------------------------------------------------------


@dataclass
class Result:
    code: int | str
    stdout: str
    stderr: str


def run_cli(argv: list[str]) -> Result:
    """`tessera ARGV` in this process: the exit code (or the uncaught exception) and output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: int | str = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException as error:  # what a user would see as a traceback
            code = f"traceback: {type(error).__name__}: {error}"
            traceback.print_exc()
    return Result(code, out.getvalue(), err.getvalue())


def value_names(text: str) -> list[str]:
    """Ways a message may quote the value typed as `text`."""
    names = [text, repr(text), text.strip("'")]
    try:
        value = read_yaml(text)
    except Exception:
        return names
    parts = [value]
    if isinstance(value, (list, tuple)):
        parts += list(value)
    if isinstance(value, dict):
        parts += list(value) + list(value.values())
    for part in parts:
        names += [repr(part), str(part)]
    return [name for name in names if name]


def refusal_problem(result: Result, case: Case) -> str | None:
    """Why `result` is not a proper refusal of `case`, or None when it is one."""
    key, text = case.key, case.text
    if result.code != 2:
        return f"exit code {result.code!r} (expected 2)"
    message = result.stderr.strip()
    if "Traceback" in message:
        return "a traceback"
    if not message.startswith("error: "):
        return f"message does not start with 'error: ': {message[:200]!r}"
    if "\n\n" in message:
        return "message is more than one paragraph"
    lines = [line for line in message.splitlines() if key in line]
    if not lines:
        return f"message does not name {key!r}: {message[:300]!r}"
    names = value_names(text)
    if case.quotes_value and not any(name in line for line in lines for name in names):
        return f"message does not quote the value {text!r}: {' / '.join(lines)[:300]!r}"
    return None


def acceptance_problem(result: Result, key: str) -> str | None:
    """Why `result` is not an acceptance of a value of `key` (a check across fields that
    refuses the combination may still speak, but not about `key` itself)."""
    if result.code == 0:
        return None
    if isinstance(result.code, str) or "Traceback" in result.stderr:
        return f"{result.code}: {result.stderr[-300:]!r}"
    own = [line for line in result.stderr.splitlines() if line.strip().startswith(key)]
    return f"refused: {' / '.join(own)[:300]!r}" if own else None
