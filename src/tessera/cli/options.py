"""What a command-line option accepts, declared where the option is added.

Each option's `type=` is one of these: argparse calls it on the text given and, when it
refuses, prints `argument --top-p: '1.5' is not accepted: must be at most 1` and exits 2, so a
bad value stops the command before anything is loaded. A `Number` keeps its range in plain
attributes (`ge`, `gt`, `le`, `lt`), so the tests generate each option's bad and boundary values
from the parser itself (tests/fuzz/). Nothing heavy is imported here: `tessera --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import math
import re
from collections.abc import Callable
from typing import Any

from tessera.core.errors import UserError
from tessera.core.values import MAX_INT, device_problem

_INTEGER = re.compile(r"[-+]?[0-9]+")
_DECIMAL = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


class Number:
    """An integer or a finite decimal number within a range: `Number(int, ge=1)`."""

    def __init__(
        self,
        kind: type[int] | type[float],
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
        lt: float | None = None,
    ) -> None:
        self.kind, self.ge, self.gt, self.le, self.lt = kind, ge, gt, le, lt
        if kind is int and le is None and lt is None:
            self.le = MAX_INT
        self.__name__ = "integer" if kind is int else "number"  # argparse names the type

    def __call__(self, text: str) -> int | float:
        pattern = _INTEGER if self.kind is int else _DECIMAL
        if not pattern.fullmatch(text):
            raise _refused(text, f"not {'an integer' if self.kind is int else 'a number'}")
        value = self.kind(text)
        if not math.isfinite(value):
            raise _refused(text, "too large to be a finite number")
        for bound, holds, words in (
            (self.ge, lambda b: value >= b, "must be at least"),
            (self.gt, lambda b: value > b, "must be more than"),
            (self.le, lambda b: value <= b, "must be at most"),
            (self.lt, lambda b: value < b, "must be less than"),
        ):
            if bound is not None and not holds(bound):
                shown = f"{bound:g}" if self.kind is float else str(int(bound))
                raise _refused(text, f"{words} {shown}")
        return value

    def __repr__(self) -> str:
        bounds = {k: getattr(self, k) for k in ("ge", "gt", "le", "lt") if getattr(self, k)}
        return f"Number({self.kind.__name__}, {bounds})"


def _refused(text: str, why: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"{text!r} is not accepted: {why}")


COUNT = Number(int, ge=1)  # how many of something: at least one
NON_NEGATIVE = Number(int, ge=0)  # a count that may be zero (retries, ranks)
SEED = Number(int, ge=0)
PORT = Number(int, ge=0, le=65535)  # 0: pick a free port, where the option says so
SHARE = Number(float, gt=0, le=1)  # a fraction of something, more than nothing
PRICE = Number(float, ge=0)  # dollars
POSITIVE = Number(float, gt=0)  # seconds, amounts
TEMPERATURE = Number(float, ge=0)  # 0 = greedy
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")  # auto: bfloat16 on a GPU


def device(text: str) -> str:
    """A device this machine has: cpu, cuda, cuda:<index> or mps (checked before loading)."""
    problem = device_problem(text)
    if problem is None:
        import torch

        kind, _, index = text.partition(":")
        if kind == "cuda" and not torch.cuda.is_available():
            problem = "no CUDA GPU is visible on this machine"
        elif kind == "cuda" and index and int(index) >= torch.cuda.device_count():
            problem = f"this machine has {torch.cuda.device_count()} GPU(s), counted from 0"
        elif kind == "mps" and not torch.backends.mps.is_available():
            problem = "this machine has no Apple GPU (mps)"
    if problem:
        raise _refused(text, problem)
    return text


def parsed_by(target: str) -> Callable[[str], Any]:
    """An option type that hands the text to `module:function` (imported when the option is
    used), whose UserError becomes argparse's refusal naming the option."""

    def parse(text: str) -> Any:
        module, _, name = target.partition(":")
        try:
            getattr(importlib.import_module(module), name)(text)
        except UserError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return text

    parse.__name__ = target.rpartition(":")[2]
    parse.target = target  # type: ignore[attr-defined]  # the fuzzer's bad values are by target
    return parse
