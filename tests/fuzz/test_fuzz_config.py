"""Every field of every config, fed bad and boundary values through `tessera config show`.

The inputs are generated from the schemas (tests/fuzz/fuzz_support.py), so a new field, a new
method or a plug-in's component is covered without a line here. A bad value must exit 2 with
one paragraph naming the field and the value, never a traceback; a value on a declared bound
must be accepted.
"""

from __future__ import annotations

import pytest
import yaml
from fuzz_support import (
    Section,
    acceptance_problem,
    cases,
    refusal_problem,
    run_cli,
    sections,
)

SECTIONS = sections()
FIELDS = [
    pytest.param(section, name, id=f"{section.label}:{name}")
    for section in SECTIONS
    for name in cases(section)
]


@pytest.fixture(scope="module")
def recipes(tmp_path_factory):
    """One valid run file per section, written once."""
    folder = tmp_path_factory.mktemp("recipes")
    written = {}
    for index, section in enumerate(SECTIONS):
        path = folder / f"{index}.yaml"
        path.write_text(yaml.safe_dump(section.base), encoding="utf-8")
        written[section.label] = str(path)
    return written


def test_every_section_base_is_valid(recipes):
    for section in SECTIONS:
        result = run_cli(["config", "show", recipes[section.label]])
        assert result.code == 0, (section.label, result.stderr)


@pytest.mark.parametrize(("section", "field"), FIELDS)
def test_field_refuses_bad_values_and_accepts_its_bounds(section: Section, field, recipes):
    failures = []
    for case in cases(section)[field]:
        result = run_cli(["config", "show", recipes[section.label], f"{case.key}={case.text}"])
        if case.good:
            problem = acceptance_problem(result, case.key)
        else:
            problem = refusal_problem(result, case)
        if problem:
            failures.append(f"{case.key}={case.text!r} ({case.why}): {problem}")
    assert not failures, "\n".join(failures)


def _one_field_of_each_kind() -> list[tuple[Section, str]]:
    """A few fields, one of each type the schemas use, to try every spelling on."""
    wanted = {
        "run": ["seed", "scale_schedule_ratio", "max_duration", "deterministic", "precision"],
        "run.optimizer": ["betas"],
        "model.resnet": ["blocks_per_stage"],
        "loggers.mlflow": ["tags", "experiment"],
    }
    return [(s, name) for s in SECTIONS for name in wanted.get(s.label, [])]


@pytest.mark.parametrize(
    ("section", "field"),
    [pytest.param(s, name, id=f"{s.label}:{name}") for s, name in _one_field_of_each_kind()],
)
def test_every_spelling_of_each_kind_on_one_field_per_type(section: Section, field, recipes):
    failures = []
    for case in cases(section, every=True)[field]:
        result = run_cli(["config", "show", recipes[section.label], f"{case.key}={case.text}"])
        check = acceptance_problem(result, case.key) if case.good else refusal_problem(result, case)
        if check:
            failures.append(f"{case.key}={case.text!r} ({case.why}): {check}")
    assert not failures, "\n".join(failures)
