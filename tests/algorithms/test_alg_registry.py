"""The registry: building methods by name, bad names and values, conflicts and ordering."""

from __future__ import annotations

from pathlib import Path

import pytest

import tessera.algorithms as algorithms
from tessera.core.algorithm import Algorithm
from tessera.core.engine import order_algorithms
from tessera.core.errors import ConfigError

CARDS = Path(__file__).resolve().parents[2] / "docs" / "methods"


def test_at_least_25_methods_each_builds_with_defaults_and_has_a_card():
    names = algorithms.names()
    assert len(names) >= 25
    for name in names:
        algorithm = algorithms.get(name)
        assert isinstance(algorithm, Algorithm) and algorithm.name == name
        card = CARDS / f"{name}.md"
        assert card.is_file(), f"method card {card} is missing"
        text = card.read_text()
        assert "changes the math" in text.lower() or "does not change the math" in text.lower()


def test_yaml_mapping_builds_in_order_with_hyperparameters():
    built = algorithms.build_algorithms({"blurpool": None, "label_smoothing": {"smoothing": 0.2}})
    assert [a.name for a in built] == ["blurpool", "label_smoothing"]
    assert built[1].smoothing == 0.2


def test_unknown_name_lists_close_names():
    with pytest.raises(ConfigError, match="'blurpool'"):
        algorithms.get("blurpol")
    with pytest.raises(ConfigError, match="label_smoothing"):
        algorithms.build_algorithms({"label_smothing": {"smoothing": 0.1}})


@pytest.mark.parametrize(
    ("name", "kwargs", "field", "valid"),
    [
        ("label_smoothing", {"smoothing": 1.5}, "smoothing=1.5", r"\[0.0, 1.0\)"),
        ("magnitude_pruning", {"target_sparsity": 1.2}, "target_sparsity=1.2", r"\[0.0, 1.0\)"),
        ("mixup", {"alpha": -1.0}, "alpha=-1.0", r"\(0.0, inf\]"),
        ("cutmix", {"alpha": 0}, "alpha=0", r"\(0.0, inf\]"),
        ("gradient_clipping", {"clipping_type": "l3"}, "clipping_type='l3'", "'adaptive'"),
        ("ema", {"smoothing": "high"}, "smoothing='high'", "a number"),
    ],
)
def test_bad_hyperparameter_names_method_field_value_and_range(name, kwargs, field, valid):
    with pytest.raises(ConfigError) as error:
        algorithms.get(name, **kwargs)
    message = str(error.value)
    assert f"'{name}'" in message and field in message
    import re

    assert re.search(valid, message), message


def test_unknown_hyperparameter_suggests_the_right_one():
    with pytest.raises(ConfigError, match="'smoothing'"):
        algorithms.get("label_smoothing", smoothin=0.1)
    with pytest.raises(ConfigError, match="mapping"):
        algorithms.build_algorithms({"blurpool": 3})
    with pytest.raises(ConfigError, match="mapping"):
        algorithms.build_algorithms(["blurpool"])  # type: ignore[arg-type]


def test_conflict_error_names_both_methods():
    with pytest.raises(ConfigError) as error:
        algorithms.build_algorithms({"mixup": {}, "cutmix": {}})
    assert "'mixup'" in str(error.value) and "'cutmix'" in str(error.value)
    with pytest.raises(ConfigError, match=r"'randaugment'.*'augmix'|'augmix'.*'randaugment'"):
        algorithms.build_algorithms({"randaugment": {}, "augmix": {}})


def test_engine_orders_resizing_before_augmentation_and_smoothing_after_mixing():
    given = algorithms.build_algorithms(
        {
            "label_smoothing": {},
            "mixup": {},
            "cutout": {},
            "compile": {},
            "blurpool": {},
            "progressive_resizing": {},
        }
    )
    order = [a.name for a in order_algorithms(given)]
    assert order.index("progressive_resizing") < order.index("cutout") < order.index("mixup")
    assert order.index("mixup") < order.index("label_smoothing")
    assert order.index("blurpool") < order.index("compile")


def test_hyperparameters_lists_defaults():
    assert algorithms.hyperparameters("label_smoothing") == {"smoothing": 0.1}
