"""Every option of every sub-command, fed bad values through the real `tessera` entry point.

The options are found by walking the parser (and the forms `tessera estimate` parses itself);
each numeric option's range comes from its `tessera.cli.options.Number`, so a new option is
covered by adding it. A bad value must exit 2 naming the option and the value, before any
work starts; every value on a declared bound must be accepted.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys

import pytest
from fuzz_support import run_cli

from tessera.cli import estimate
from tessera.cli.main import build_parser
from tessera.cli.options import Number, device
from tessera.core.values import MAX_INT


def _leaf_parsers(
    parser: argparse.ArgumentParser, path: list[str]
) -> list[tuple[list[str], argparse.ArgumentParser]]:
    found = []
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for action in subcommands:
        for name, child in action.choices.items():
            found += _leaf_parsers(child, [*path, name])
    return found or [(path, parser)]


def _parsers() -> list[tuple[list[str], argparse.ArgumentParser]]:
    found = _leaf_parsers(build_parser(), [])
    found += [(["estimate", name], make()) for name, (make, _) in estimate.FORMS.items()]
    found.append((["estimate", "recipe.yaml"], estimate.recipe_parser()))
    return found


def _options() -> list[tuple[list[str], argparse.Action]]:
    return [
        (path, action)
        for path, parser in _parsers()
        for action in parser._actions
        if action.option_strings and action.dest != "help"
    ]


OPTIONS = _options()


def _bad_numbers(number: Number) -> list[str]:
    integer = number.kind is int
    texts = ["x", "", "nan", "inf", "-inf", "1e400", "true", "0x10", "1_000", " 5", "5\u200b"]
    texts += ["1.5", str(MAX_INT + 1), str(10**30)] if integer else ["1e309"]
    step = (lambda v, d: v + d) if integer else (lambda v, d: math.nextafter(v, d * math.inf))
    if number.ge is not None:
        texts.append(repr(step(number.ge, -1)))
    if number.gt is not None:
        texts.append(repr(number.gt))
    if number.le is not None:
        texts.append(repr(step(number.le, 1)))
    if number.lt is not None:
        texts.append(repr(number.lt))
    return texts


def _good_numbers(number: Number) -> list[str]:
    integer = number.kind is int
    step = (lambda v, d: v + d) if integer else (lambda v, d: math.nextafter(v, d * math.inf))
    texts = [repr(bound) for bound in (number.ge, number.le) if bound is not None]
    texts += [repr(step(number.gt, 1))] if number.gt is not None else []
    texts += [repr(step(number.lt, -1))] if number.lt is not None else []
    return texts


# Bad values for each `parsed_by(target)` option type; a new target must be added here.
PARSED_BAD = {
    "tessera.data.writer:parse_compression": ["zstd:99", "zstd:0", "zstd:x", "gzip", "zstd\u200b"],
    "tessera.data.convert:parse_shard_size": ["0", "-1MiB", "64parsecs", "x", "auto\u200b"],
}


def _bad_values(action: argparse.Action) -> list[str]:
    if hasattr(action.type, "target"):
        return PARSED_BAD.get(action.type.target, [])
    if isinstance(action.type, Number):
        return _bad_numbers(action.type)
    if action.type is device:
        return ["tpu", "cpu\u200b", "cuda:x", "", "CPU", "cuda:99"]
    if action.choices:
        first = str(next(iter(action.choices)))
        return ["bogus_choice", first + "\u200b", f" {first}", first.upper() + "X"]
    return []


def _id(path: list[str], action: argparse.Action) -> str:
    return " ".join(path) + " " + action.option_strings[-1]


def test_no_option_takes_a_bare_int_or_float():
    """A number option declares its range (tessera.cli.options), or the fuzzer cannot test it."""
    bare = [_id(p, a) for p, a in OPTIONS if a.type in (int, float)]
    assert not bare, f"use a tessera.cli.options.Number for: {', '.join(bare)}"


def test_every_parsed_option_has_bad_values():
    missing = [_id(p, a) for p, a in OPTIONS if hasattr(a.type, "target") and not _bad_values(a)]
    assert not missing, f"add bad values to PARSED_BAD for: {', '.join(missing)}"


@pytest.mark.parametrize(
    ("path", "action"),
    [pytest.param(p, a, id=_id(p, a)) for p, a in OPTIONS if _bad_values(a)],
)
def test_bad_option_values_exit_2_naming_the_option(path, action):
    option = action.option_strings[-1]
    failures = []
    for text in _bad_values(action):
        result = run_cli([*path, f"{option}={text}"])
        message = result.stderr
        if result.code != 2:
            failures.append(f"{option}={text!r}: exit {result.code!r}: {message[-300:]!r}")
        elif "Traceback" in message or option not in message:
            failures.append(f"{option}={text!r}: message does not name it: {message[-300:]!r}")
        elif text and repr(text) not in message and text not in message:
            failures.append(f"{option}={text!r}: message does not quote it: {message[-300:]!r}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("path", "action"),
    [pytest.param(p, a, id=_id(p, a)) for p, a in OPTIONS if isinstance(a.type, Number)],
)
def test_values_on_each_declared_bound_are_accepted(path, action):
    for text in _good_numbers(action.type):
        value = action.type(text)
        assert isinstance(value, action.type.kind), (text, value)


def test_a_bad_option_value_is_refused_by_the_installed_command_too():
    """The same refusal from a real process: `python -m tessera.cli generate --top-p 2`."""
    result = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "generate", "--top-p", "2", "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "argument --top-p: '2' is not accepted: must be at most 1" in result.stderr
    assert "Traceback" not in result.stderr
