"""`tessera.functional`: every method's plain function in one lazily loaded namespace."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import torch
from pydantic import BaseModel

import tessera.algorithms as algorithms
import tessera.functional as functional
from tessera.core.algorithm import Algorithm


def _method_modules() -> dict[str, object]:
    modules = {}
    for name in algorithms.names():
        modules[name] = importlib.import_module(algorithms.ALGORITHMS.get(name).__module__)
    return modules


def _is_component(value: object) -> bool:
    return inspect.isclass(value) and issubclass(value, (Algorithm, BaseModel))


def test_functional_lists_exactly_the_public_functions_of_every_method_module():
    expected = {}
    for name, module in _method_modules().items():
        public = [n for n in module.__all__ if not _is_component(getattr(module, n))]
        assert public, f"method {name!r} ({module.__name__}) has no public plain function"
        expected.update(dict.fromkeys(public, module.__name__))
    assert expected == functional.EXPORTS


def test_every_listed_name_resolves_to_the_method_modules_object():
    for name, module_name in functional.EXPORTS.items():
        value = getattr(functional, name)
        assert value is getattr(importlib.import_module(module_name), name)
        assert callable(value) and inspect.getdoc(value), f"{name} has no docstring"
    assert sorted(dir(functional)) == sorted(functional.EXPORTS)


def test_a_functional_form_does_what_its_method_does():
    logits, targets = torch.randn(8, 5), torch.randint(0, 5, (8,))
    plain = torch.nn.functional.cross_entropy(logits, targets)
    smoothed = functional.smoothed_loss(plain, logits, 0.2)
    expected = torch.nn.functional.cross_entropy(logits, targets, label_smoothing=0.2)
    assert torch.allclose(smoothed, expected, atol=1e-6)


def test_importing_tessera_functional_loads_no_method_module():
    code = (
        "import sys, tessera.functional as f; "
        "print(sorted(m for m in sys.modules if m.startswith('tessera.algorithms') "
        "or m == 'torch'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
