"""Each quality filter keeps a document just inside its threshold and removes one just outside;
thresholds come from the settings, out-of-range ones are refused naming the field; a user filter
registers through the registry and is counted in the report like the built-in ones."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from tessera.core.errors import ConfigError
from tessera.data.clean import CleanConfig, Document, clean, parse_config, register_filter
from tessera.data.clean.filters import PRESETS, resolve_filters
from tessera.data.clean.planted import synthetic_documents

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda"]


def words(n: int, start: int = 0) -> str:
    """n distinct-ish words (so that no repetition filter fires)."""
    return " ".join(f"{WORDS[(start + i) % 9]}{(start + i) // 9}" for i in range(n))


def lines(texts: list[str]) -> str:
    return "\n".join(texts)


def check(name: str, **thresholds):
    ((_, _, function),) = resolve_filters({"preset": "none", name: thresholds})
    return lambda text: function(Document(text))


# (filter, thresholds, text kept, text removed): each pair sits on both sides of the threshold
CASES = [
    ("gopher_length", {"min_words": 50}, words(50), words(49)),
    ("gopher_length", {"max_words": 60}, words(60), words(61)),
    ("gopher_mean_word_length", {"min_length": 3.0}, "abc " * 10, "abc ab " * 5),
    ("gopher_mean_word_length", {"max_length": 10.0}, "abcdefghij " * 5, "abcdefghijk " * 5),
    ("gopher_symbol_ratio", {"max_ratio": 0.1}, words(90) + " #" * 10, words(89) + " #" * 11),
    ("gopher_bullet_lines", {"max_fraction": 0.9}, lines(["- a"] * 9 + ["b"]), lines(["- a"] * 10)),
    (
        "gopher_ellipsis_lines",
        {"max_fraction": 0.3},
        lines(["a..."] * 3 + ["b."] * 7),
        lines(["a..."] * 4 + ["b."] * 6),
    ),
    ("gopher_alpha_words", {"min_fraction": 0.8}, words(8) + " 1 2", words(8) + " 1 2 3"),
    ("gopher_stop_words", {"min_count": 2}, words(20) + " the and", words(20) + " the"),
    (
        "gopher_repeated_lines",
        {"max_line_chars": 1.0, "max_paragraph_chars": 1.0},
        lines([words(3, i) for i in range(7)] + ["same line"] * 4),
        lines([words(3, i) for i in range(6)] + ["same line"] * 5),
    ),
    (
        "gopher_repeated_lines",
        {"max_line_fraction": 1.0, "max_paragraph_fraction": 1.0},
        lines([words(8, 100)] + ["repeat me"] * 3),
        lines([words(8, 100)] + ["repeat me"] * 5),
    ),
    (
        "gopher_top_ngrams",
        {"max_chars": {2: 0.2}},
        words(10) + " xx yy" * 3,
        words(10) + " xx yy" * 4,
    ),
    (
        "gopher_duplicate_ngrams",
        {"max_chars": {5: 0.15}},
        words(80) + " " + words(5, 500) + " " + words(5, 500),
        words(40) + " " + words(5, 500) + " " + words(5, 500),
    ),
    (
        "c4_punctuation_lines",
        {"min_fraction": 0.12},
        lines(["end."] * 3 + ["no"] * 22),
        lines(["end."] * 2 + ["no"] * 23),
    ),
    ("c4_lorem_ipsum", {}, words(20), words(10) + " Lorem ipsum dolor sit amet"),
    ("c4_curly_brace", {}, words(20), words(10) + " { return x; }"),
]


@pytest.mark.parametrize(
    ("name", "thresholds", "kept", "removed"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_filter_keeps_inside_and_removes_outside_its_threshold(name, thresholds, kept, removed):
    function = check(name, **thresholds)
    assert function(kept)
    assert not function(removed)


def test_every_registered_filter_has_a_case():
    assert {c[0] for c in CASES} == set(PRESETS["gopher"]) | set(PRESETS["c4"])


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"near": {"threshold": 1.5}}, "near.threshold"),
        ({"near": {"num_perm": 4}}, "near.num_perm"),
        ({"quality": {"gopher_length": {"min_words": -1}}}, "quality.gopher_length.min_words"),
        ({"quality": {"gopher_alpha_words": {"min_fraction": 2}}}, "min_fraction"),
        ({"quality": {"gopher_length": {"min_words": 90, "max_words": 10}}}, "min_words 90"),
        ({"quality": {"gopher_top_ngrams": {"max_chars": {2: 1.5}}}}, "max_chars 2"),
        ({"quality": {"gopher_lenght": {}}}, "did you mean 'gopher_length'"),
        ({"quality": {"preset": "fancy"}}, "quality.preset"),
    ],
)
def test_settings_out_of_range_are_refused_naming_the_field(settings, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_config(settings)


class LongLines(BaseModel):
    max_chars: int = Field(200, ge=1)


def _long_lines(config: LongLines):
    return lambda document: all(len(line) <= config.max_chars for line in document.lines)


register_filter("test_long_lines", LongLines, _long_lines)  # at import: workers import it too


def test_a_user_filter_registers_and_is_counted(tmp_path):
    documents = synthetic_documents(12, seed=3)
    limit = max(len(p) for d in documents for p in d.split("\n\n"))
    documents[4] = documents[4].replace("\n\n", " ")  # one line longer than any other
    folder = tmp_path / "in"
    folder.mkdir()
    for number, text in enumerate(documents):
        (folder / f"{number:02d}.txt").write_text(text, encoding="utf-8")
    settings = {
        "quality": {"preset": "default", "test_long_lines": {"max_chars": limit}},
        "dedup": {"near": False},
        "workers": 2,  # the workers import this module to register the filter
    }
    report = clean([str(folder)], str(tmp_path / "out"), parse_config(settings), progress=False)
    counts = {entry["name"]: entry["removed"] for entry in report["filters"]}
    assert counts["test_long_lines"] == 1
    assert report["removed"]["test_long_lines"]["documents"] == counts["test_long_lines"]
    assert all(v == 0 for k, v in counts.items() if k != "test_long_lines")
    assert report["samples"]["test_long_lines"][0]["document"].endswith("04.txt#0")
    assert report["filters"][-1]["thresholds"] == {"max_chars": limit}
    assert report["output"]["documents"] == 11


def test_default_preset_passes_ordinary_prose():
    filters = resolve_filters(CleanConfig().quality)
    for text in synthetic_documents(20, seed=5):
        assert all(f(Document(text)) for _, _, f in filters)
