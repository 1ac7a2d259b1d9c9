"""How a run file and a `key=value` override are read: YAML, with plain values read plainly.

PyYAML follows YAML 1.1, which reads much that looks like text as something else: `0x10ba`
and `010` as integers (4282 and 8), `1:30` as 90, `no`/`on` as booleans and `2024-01-01` as a
date, so `eval_interval: 0x10ba` quietly meant 4282 epochs. Run files are read with the
scalars of the YAML 1.2 core schema instead: decimal integers, decimal floats (`3e-4` too,
which YAML 1.1 leaves a string), `.inf`/`.nan`, `true`/`false` and `null`; anything else is
text, which the field it is given to then accepts or refuses by name (a number field refuses
'0x10'). A key given twice in one mapping is refused instead of the later one silently
winning.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
# YAML 1.1's own readings of plain text that are replaced (bool, int, float) or dropped.
_REPLACED = {_BOOL, _INT, _FLOAT, "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"}


_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where built


class RunFileLoader(_SafeLoader):  # type: ignore[misc, valid-type]
    """A safe loader with YAML 1.2 core scalars that refuses duplicate keys."""

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise ConstructorError(
                            None, None, f"the key {key!r} is given twice", key_node.start_mark
                        )
                    seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader: yaml.SafeLoader, node: Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    try:
        return int(text, 10)
    except ValueError:
        raise ConstructorError(
            None, None, f"{text!r} is not a decimal integer", node.start_mark
        ) from None


RunFileLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag not in _REPLACED]
    for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()
}
RunFileLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
RunFileLoader.add_implicit_resolver(_INT, re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
RunFileLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_float(loader: yaml.SafeLoader, node: Node) -> float | str:
    value = loader.construct_yaml_float(node)
    text = str(node.value)
    if math.isinf(value) and "inf" not in text.lower():
        return text  # '1e400' overflows: kept as typed, so that an error can quote it
    return value


RunFileLoader.add_constructor(_INT, _construct_int)
RunFileLoader.add_constructor(_FLOAT, _construct_float)


def read_yaml(text: str) -> Any:
    """`text` read as a run file reads it (raises yaml.YAMLError with its position)."""
    return yaml.load(text, Loader=RunFileLoader)
