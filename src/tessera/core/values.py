"""Values that no option accepts, whatever its type: checked once, for every config field.

A recipe is typed by people and read by YAML, so values arrive that a field's type lets
through although nobody means them: `true` where a number goes (Python counts it as 1), an
integer too large for any tensor or counter, a blank string, or text carrying a zero-width
space or a control character pasted from elsewhere (`cpu\u200b` prints like `cpu`).
`tessera.core.component.ComponentConfig` applies both checks below to every field of every
component, down into lists and mappings as far as the field's type describes them (what a
field types as `Any` is some other schema's to check). Each returns a problem, worded to
follow the value that the caller names, or None.
"""

from __future__ import annotations

import collections.abc
import functools
import re
import types
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import PurePath
from typing import Annotated, Any, Literal, Union, get_args, get_origin

MAX_INT = 2**63 - 1  # the largest int64: every count, size and seed of a run fits in it

# Unicode categories that never belong in a name, path or option: controls, format characters
# (zero-width spaces and joiners, direction overrides, byte-order marks), surrogates, and line
# or paragraph separators.
_INVISIBLE = {"Cc", "Cf", "Cs", "Zl", "Zp"}
_DEVICE = re.compile(r"(cpu|mps|cuda(:[0-9]+)?)")
_SEQUENCES = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Set)
_MAPPINGS = (dict, collections.abc.Mapping)  # mapping types, in annotations

Check = Callable[[Any, "_Shape"], "str | None"]


def device_problem(text: str) -> str | None:
    """What is wrong with `text` as the name of a device (its form, not whether it is here)."""
    if _DEVICE.fullmatch(text):
        return None
    junk = _text_problem(text)
    return junk or "not a device; use cpu, cuda, cuda:<index> or mps"


def bool_for_number(value: Any, annotation: Any) -> str | None:
    """true/false where `annotation` wants a number (checked before pydantic reads True as 1,
    so that `model.width=true` does not build a model one channel wide)."""
    if not isinstance(value, (bool, list, tuple, dict)):
        return None  # the common case, decided without looking at the type
    return _walk(value, _shape(annotation), _bool_leaf)


def unusable_scalar(value: Any, annotation: Any) -> str | None:
    """An integer beyond 64 bits, or a blank string or one with invisible characters, anywhere
    in an (already validated) value of type `annotation`."""
    if value is None or isinstance(value, (bool, float, Enum)):
        return None
    return _walk(value, _shape(annotation), _scalar_leaf)


@dataclass(frozen=True)
class _Shape:
    """What a type says about the values it takes, as far as these checks need."""

    alternatives: tuple[Any, ...]
    skip: bool  # Any or object: some other schema's to check
    wants_number: bool  # int or float, and no bool, among the alternatives

    def item(self, index: int) -> _Shape:
        """What item `index` of a sequence may be, over every sequence type here."""
        items: list[Any] = []
        for member in self.alternatives:
            if not _origin_in(member, _SEQUENCES):
                continue
            args = get_args(member)
            if get_origin(member) is tuple and args and args[-1] is not Ellipsis:
                items.append(args[index] if index < len(args) else Any)
            elif args:
                items.append(args[0])
        return _shape_of(tuple(items) or (Any,))

    def entries(self) -> tuple[_Shape, _Shape]:
        """What the keys and the values of a mapping may be, over every mapping type here."""
        keys, values = [], []
        for member in self.alternatives:
            args = get_args(member)
            if _origin_in(member, _MAPPINGS) and len(args) == 2:
                keys.append(args[0])
                values.append(args[1])
        return _shape_of(tuple(keys) or (Any,)), _shape_of(tuple(values) or (Any,))


def _bool_leaf(value: Any, shape: _Shape) -> str | None:
    if isinstance(value, bool) and shape.wants_number:
        return "true/false where a number is expected"
    return None


def _scalar_leaf(value: Any, shape: _Shape) -> str | None:
    if isinstance(value, (bool, Enum)):
        return None
    if isinstance(value, int):
        return f"an integer beyond 64 bits (at most {MAX_INT})" if abs(value) > MAX_INT else None
    if isinstance(value, (str, PurePath)):
        return _text_problem(str(value))
    return None


def _text_problem(text: str) -> str | None:
    if not text.strip():
        return "a blank string; give a value or leave the field out"
    if text.isprintable():  # the common case, in C: no control, format or separator character
        return None
    for position, character in enumerate(text):
        if unicodedata.category(character) in _INVISIBLE:
            name = unicodedata.name(character, "a control character")
            return (
                f"it holds the invisible character U+{ord(character):04X} ({name}) at "
                f"position {position}; type it again without that character"
            )
    return None


def _walk(value: Any, shape: _Shape, check: Check) -> str | None:
    """`check` on `value` and on every item and entry inside it that `shape` types."""
    if shape.skip:
        return None
    problem = check(value, shape)
    if problem:
        return problem
    if isinstance(value, (list, tuple, set, frozenset)):
        for index, item in enumerate(value):
            problem = _walk(item, shape.item(index), check)
            if problem:
                return f"item {index}: {problem}"
    elif isinstance(value, dict):  # configs hold plain dicts
        keys, values = shape.entries()
        for key, item in value.items():
            problem = _walk(key, keys, check) or _walk(item, values, check)
            if problem:
                return f"entry {key!r}: {problem}"
    return None


@functools.lru_cache(maxsize=4096)
def _shape_of(annotations: tuple[Any, ...]) -> _Shape:
    alternatives = tuple(m for a in annotations for m in type_alternatives(a))
    numbers = any(member in (int, float) for member in alternatives)
    return _Shape(
        alternatives,
        skip=any(member in (Any, object) for member in alternatives),
        wants_number=numbers and not _takes_bool(alternatives),
    )


def _shape(annotation: Any) -> _Shape:
    try:
        return _shape_of((annotation,))
    except TypeError:  # an unhashable annotation: worked out each time
        return _shape_of.__wrapped__((annotation,))


def type_alternatives(annotation: Any) -> list[Any]:
    """The alternatives of a (possibly annotated, optional or union) type."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return type_alternatives(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [member for arg in get_args(annotation) for member in type_alternatives(arg)]
    return [annotation]


def _takes_bool(members: tuple[Any, ...]) -> bool:
    return any(
        member is bool
        or (get_origin(member) is Literal and any(isinstance(a, bool) for a in get_args(member)))
        for member in members
    )


def _origin_in(member: Any, kinds: tuple[type, ...]) -> bool:
    origin = get_origin(member)
    return isinstance(origin, type) and issubclass(origin, kinds)
