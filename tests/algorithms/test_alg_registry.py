"""The registry: building methods by name, typed options refused at load with did-you-mean
(generated over every registered method), a former name, conflicts and ordering."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

import tessera.algorithms as algorithms
from tessera.algorithms.blurpool import BlurPool, BlurPoolConfig
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.engine import order_algorithms
from tessera.core.errors import ConfigError

CARDS = Path(__file__).resolve().parents[2] / "docs" / "methods"
METHODS = algorithms.names()


def test_at_least_25_methods_each_builds_with_defaults_and_has_a_card():
    assert len(METHODS) >= 25
    for name in METHODS:
        algorithm = algorithms.get(name)
        assert isinstance(algorithm, Algorithm) and algorithm.name == name
        assert issubclass(type(algorithm).Config, ComponentConfig)
        assert type(algorithm).Config is not ComponentConfig, f"{name} has no Config of its own"
        card = CARDS / f"{name}.md"
        assert card.is_file(), f"method card {card} is missing"
        text = card.read_text()
        assert "changes the math" in text.lower() or "does not change the math" in text.lower()
        shown = text.split("In a run file (defaults shown):\n```yaml\n")[1].split("```")[0]
        defaults = yaml.safe_load(shown)["algorithms"][name]
        assert defaults == _plain(algorithms.hyperparameters(name)), f"{card.name}: defaults"
        for field in type(algorithm).Config.model_fields:
            assert f"| `{field}` |" in text, f"{card.name} has no row for the option {field!r}"


def _plain(values: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def test_yaml_mapping_builds_in_order_with_hyperparameters():
    built = algorithms.build_algorithms({"blurpool": None, "label_smoothing": {"smoothing": 0.2}})
    assert [a.name for a in built] == ["blurpool", "label_smoothing"]
    assert built[1].config.smoothing == 0.2
    assert built[0].config == BlurPoolConfig()


def test_python_keywords_and_recipe_options_are_the_same_config():
    from_python = BlurPool(min_channels=8)
    from_recipe = algorithms.build_algorithms({"blurpool": {"min_channels": 8}})[0]
    assert from_python.config == from_recipe.config == BlurPoolConfig(min_channels=8)
    assert BlurPool(BlurPoolConfig(min_channels=8)).config.min_channels == 8
    with pytest.raises(ConfigError, match="either a config or keyword options"):
        BlurPool(BlurPoolConfig(), min_channels=8)
    with pytest.raises(ConfigError, match=r"blurpool\.min_chanels: unknown key"):
        BlurPool(min_chanels=8)


def test_unknown_name_lists_close_names():
    with pytest.raises(ConfigError, match="'blurpool'"):
        algorithms.get("blurpol")
    with pytest.raises(ConfigError, match="label_smoothing"):
        algorithms.build_algorithms({"label_smothing": {"smoothing": 0.1}})


def _typo(field: str) -> str:
    """A near miss of `field`: its second letter dropped (`smoothing` -> `soothing`)."""
    return field[0] + field[2:] if len(field) > 3 else field + "x"


def _cases() -> list[tuple[str, str]]:
    cases = []
    for name in METHODS:
        fields = list(algorithms.ALGORITHMS.config_class(name).model_fields)
        cases += [(name, field) for field in fields] or [(name, "")]
    return cases


@pytest.mark.parametrize(("name", "field"), _cases(), ids="-".join)
def test_a_typo_in_any_option_is_refused_at_load_with_the_closest_name(name, field):
    if not field:  # a method without options refuses every key
        _, problems = algorithms.ALGORITHMS.validate_mapping({name: {"size": 1}})
        assert len(problems) == 1 and problems[0].startswith(f"algorithms.{name}.size: unknown")
        return
    typo = _typo(field)
    configs, problems = algorithms.ALGORITHMS.validate_mapping({name: {typo: 1}})
    assert configs == {}
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"algorithms.{name}.{typo}: unknown key")
    assert f"did you mean '{field}'" in problems[0]
    with pytest.raises(ConfigError, match=re.escape(f"did you mean '{field}'")):
        algorithms.get(name, **{typo: 1})
    method_class = algorithms.ALGORITHMS.get(name)  # Python keywords: the same check
    with pytest.raises(ConfigError, match=re.escape(f"{name}.{typo}: unknown key; did you")):
        method_class(**{typo: 1})


@pytest.mark.parametrize(("name", "field"), [c for c in _cases() if c[1]], ids="-".join)
def test_a_bad_value_for_any_option_is_refused_at_load_naming_the_field(name, field):
    # A mapping is no valid value of any option (number, flag, choice, list or name).
    configs, problems = algorithms.ALGORITHMS.validate_mapping({name: {field: {"bad": 1}}})
    assert configs == {}
    assert problems and problems[0].startswith(f"algorithms.{name}.{field}: {{'bad': 1}} is not")


def test_every_problem_of_a_recipe_section_is_reported_at_once():
    _, problems = algorithms.ALGORITHMS.validate_mapping(
        {
            "blurpool": {"min_chanels": 8},
            "mixup": {"alpha": 0},
            "selective_backprop": {"start": 0.9, "end": 0.5},
            "progressive_resizing": {"mode": "bilinear"},
            "label_smoothing": {"smoothing": 0.1},
        }
    )
    assert problems == [
        "algorithms.blurpool.min_chanels: unknown key; did you mean 'min_channels'?",
        "algorithms.mixup.alpha: 0 is not accepted: Input should be greater than 0",
        "algorithms.selective_backprop: start (0.9) must be before end (0.5), or no batch is "
        "selected",
        "algorithms.progressive_resizing.mode: 'bilinear' is not accepted: Input should be "
        "'resize' or 'crop'",
    ]


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("blurpool", {"replace_convs": False, "replace_maxpools": False}, "change nothing"),
        ("factorize", {"factorize_convs": False, "factorize_linears": False}, "change nothing"),
        ("magnitude_pruning", {"start": 0.8, "end": 0.5}, r"start \(0.8\) must not be after"),
        ("progressive_resizing", {"delay": 0.7, "finetune": 0.5}, "at most 1"),
        ("colout", {"p_row": 0, "p_col": 0}, "nothing would be dropped"),
        ("augmix", {"depth": 0}, "at least one op"),
        ("squeeze_excite", {"latent_channels": 2.5}, "must be whole"),
        ("low_precision_norm", {"kinds": []}, "at least one entry"),
        ("stochastic_depth", {"drop_distribution": "quadratic"}, "'uniform' or 'linear'"),
        ("fused_optimizer", {"kind": "fast"}, "'foreach' or 'fused'"),
        ("label_smoothing", {"smoothing": 1.5}, "less than 1"),
    ],
)
def test_checks_that_need_no_model_fail_at_load(name, options, message):
    _, problems = algorithms.ALGORITHMS.validate_mapping({name: options})
    assert len(problems) == 1 and problems[0].startswith(f"algorithms.{name}")
    assert re.search(message, problems[0]), problems[0]


def test_the_former_low_precision_layernorm_is_refused_naming_low_precision_norm():
    _, problems = algorithms.ALGORITHMS.validate_mapping({"low_precision_layernorm": {}})
    assert len(problems) == 1
    assert "Rename the key 'low_precision_layernorm' to 'low_precision_norm'" in problems[0]
    with pytest.raises(ConfigError, match="merged into low_precision_norm"):
        algorithms.get("low_precision_layernorm")
    assert "low_precision_layernorm" not in algorithms.names()


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
            "channels_last": {},
            "blurpool": {},
            "progressive_resizing": {},
        }
    )
    order = [a.name for a in order_algorithms(given)]
    assert order.index("progressive_resizing") < order.index("cutout") < order.index("mixup")
    assert order.index("mixup") < order.index("label_smoothing")
    assert order.index("blurpool") < order.index("channels_last")


def test_hyperparameters_lists_every_field_with_its_default():
    assert algorithms.hyperparameters("label_smoothing") == {"smoothing": 0.1}
    assert algorithms.hyperparameters("blurpool") == {
        "replace_convs": True,
        "replace_maxpools": True,
        "min_channels": 16,
    }
    for name in METHODS:
        config = algorithms.ALGORITHMS.config_class(name)()
        assert isinstance(config, BaseModel)
        assert algorithms.hyperparameters(name) == dict(config)
