"""Quality filters: the published heuristics (Gopher, C4), each named, with its thresholds.

A filter is a pydantic config (its thresholds, with their ranges) and a builder that turns the
config into `check(document) -> bool` (True keeps the document). Filters run in order and a
document is removed by the first that rejects it, so the report counts each removal once.
User filters register in the same registry (`register_filter`) and are named in the settings
like the built-in ones: `quality: {preset: default, my_filter: {limit: 3}}`.

Thresholds follow Rae et al. 2021 (Gopher, "MassiveText" quality and repetition filters) and
Raffel et al. 2020 (C4); the fraction of lines ending in punctuation uses FineWeb's 0.12.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tessera.core.component import build_config
from tessera.core.errors import ConfigError
from tessera.core.registry import Registry, builder
from tessera.data.clean.document import Document

Check = Callable[[Document], bool]
# The quality filters, in the project's one registry (entry-point group tessera.quality_filters).
FILTERS = Registry("quality_filters", "quality")

PRESETS: dict[str, list[str]] = {
    "none": [],
    "gopher": [
        "gopher_length",
        "gopher_mean_word_length",
        "gopher_symbol_ratio",
        "gopher_bullet_lines",
        "gopher_ellipsis_lines",
        "gopher_alpha_words",
        "gopher_stop_words",
        "gopher_repeated_lines",
        "gopher_top_ngrams",
        "gopher_duplicate_ngrams",
    ],
    "c4": ["c4_lorem_ipsum", "c4_punctuation_lines", "c4_curly_brace"],
}
PRESETS["default"] = [*PRESETS["gopher"], "c4_lorem_ipsum", "c4_punctuation_lines"]


def register_filter(
    name: str, config_class: type[BaseModel], build: Callable[[BaseModel], Check]
) -> None:
    """Add a filter: `build(config)` returns a function that is True for documents to keep."""
    FILTERS.register(name, builder(config_class)(build))


class _Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- Gopher quality ----------------------------------------------------------------------
class LengthConfig(_Thresholds):
    min_words: int = Field(50, ge=0)
    max_words: int = Field(100_000, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> LengthConfig:
        if self.min_words > self.max_words:
            raise ValueError(f"min_words {self.min_words} is above max_words {self.max_words}")
        return self


class MeanWordLengthConfig(_Thresholds):
    min_length: float = Field(3.0, ge=0)
    max_length: float = Field(10.0, gt=0)


class RatioConfig(_Thresholds):
    max_ratio: float = Field(0.1, ge=0)


class BulletConfig(_Thresholds):
    max_fraction: float = Field(0.9, ge=0, le=1)


class EllipsisConfig(_Thresholds):
    max_fraction: float = Field(0.3, ge=0, le=1)


class AlphaConfig(_Thresholds):
    min_fraction: float = Field(0.8, ge=0, le=1)


class StopWordConfig(_Thresholds):
    min_count: int = Field(2, ge=0)
    words: list[str] = Field(
        default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"]
    )


def _length(config: LengthConfig) -> Check:
    return lambda doc: config.min_words <= len(doc.words) <= config.max_words


def _mean_word_length(config: MeanWordLengthConfig) -> Check:
    def check(doc: Document) -> bool:
        if not doc.words:
            return False
        mean = (len(doc.normalized) - len(doc.words) + 1) / len(doc.words)
        return config.min_length <= mean <= config.max_length

    return check


def _symbol_ratio(config: RatioConfig) -> Check:
    def check(doc: Document) -> bool:
        symbols = doc.text.count("#") + doc.text.count("...") + doc.text.count("\u2026")
        return symbols <= config.max_ratio * max(len(doc.tokens), 1)

    return check


_LETTER = re.compile(r"[^\W\d_]")
_BULLETS = ("\u2022", "\u2023", "\u25e6", "\u2043", "\u25aa", "\u25cf", "-", "*", "\u2013")


def _bullet_lines(config: BulletConfig) -> Check:
    def check(doc: Document) -> bool:
        bullets = sum(line.startswith(_BULLETS) for line in doc.lines)
        return bullets <= config.max_fraction * max(len(doc.lines), 1)

    return check


def _ellipsis_lines(config: EllipsisConfig) -> Check:
    def check(doc: Document) -> bool:
        ending = sum(line.endswith(("...", "\u2026")) for line in doc.lines)
        return ending <= config.max_fraction * max(len(doc.lines), 1)

    return check


def _alpha_words(config: AlphaConfig) -> Check:
    def check(doc: Document) -> bool:
        if not doc.tokens:
            return False
        alpha = sum(1 for token in doc.tokens if token.isalpha() or _LETTER.search(token))
        return alpha >= config.min_fraction * len(doc.tokens)

    return check


def _stop_words(config: StopWordConfig) -> Check:
    words = frozenset(word.lower() for word in config.words)

    def check(doc: Document) -> bool:
        found = 0
        for word in doc.words:
            found += word in words
            if found >= config.min_count:
                return True
        return found >= config.min_count

    return check


# ---- Gopher repetition -------------------------------------------------------------------
class RepeatedLinesConfig(_Thresholds):
    max_line_fraction: float = Field(0.3, ge=0, le=1, description="repeated lines / lines")
    max_line_chars: float = Field(0.2, ge=0, le=1, description="chars in repeated lines")
    max_paragraph_fraction: float = Field(0.3, ge=0, le=1)
    max_paragraph_chars: float = Field(0.2, ge=0, le=1)


class _NgramLimits(_Thresholds):
    """`max_chars`: {n: largest fraction of the characters}, n words per n-gram."""

    max_chars: dict[int, float]

    @model_validator(mode="after")
    def _in_range(self) -> _NgramLimits:
        for n, limit in self.max_chars.items():
            if not 1 <= n <= 64 or not 0.0 <= limit <= 1.0:
                raise ValueError(f"max_chars {n}: {limit} needs 1 <= n <= 64 and 0 <= limit <= 1")
        return self


class TopNgramConfig(_NgramLimits):
    max_chars: dict[int, float] = Field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})


class DuplicateNgramConfig(_NgramLimits):
    max_chars: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )


def _repeated(items: list[str]) -> tuple[int, int]:
    """(items that repeat an earlier one, their characters)."""
    counts = Counter(items)
    repeats = [item for item, count in counts.items() if count > 1 for _ in range(count - 1)]
    return len(repeats), sum(len(item) for item in repeats)


def _repeated_lines(config: RepeatedLinesConfig) -> Check:
    def over(items: list[str], fraction: float, chars: float, total_chars: int) -> bool:
        count, characters = _repeated(items)
        return count > fraction * len(items) or characters > chars * max(total_chars, 1)

    def check(doc: Document) -> bool:
        total = len(doc.text)
        lines, paragraphs = doc.lines, doc.paragraphs
        if over(lines, config.max_line_fraction, config.max_line_chars, total):
            return False
        return not over(
            paragraphs, config.max_paragraph_fraction, config.max_paragraph_chars, total
        )

    return check


def _runs(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, run starts, run lengths) of the sorted hashes: each run is one distinct n-gram."""
    order = np.argsort(hashes)
    ordered = hashes[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    lengths = np.diff(np.concatenate([starts, [len(ordered)]]))
    return order, starts, lengths


def _top_ngrams(config: TopNgramConfig) -> Check:
    def check(doc: Document) -> bool:
        lengths = doc.word_lengths
        total = int(lengths.sum())
        for n, limit in sorted(config.max_chars.items()):
            if len(lengths) < n or not total:
                continue
            order, starts, runs = _runs(doc.ngram_hashes(n))
            top = int(np.argmax(runs))
            if runs[top] < 2:
                continue
            first = int(order[starts[top]])
            if int(lengths[first : first + n].sum()) * int(runs[top]) > limit * total:
                return False
        return True

    return check


def _duplicate_ngrams(config: DuplicateNgramConfig) -> Check:
    limits = sorted(config.max_chars.items())

    def check(doc: Document) -> bool:
        lengths = doc.word_lengths
        total = int(lengths.sum())
        for index, (n, limit) in enumerate(limits):
            if len(lengths) < n or not total:
                continue
            order, _, runs = _runs(doc.ngram_hashes(n))
            repeated_runs = runs > 1
            if not repeated_runs.any():
                return True  # no repeated n-gram: no longer one repeats either
            repeated = np.zeros(len(order), dtype=bool)
            repeated[order] = np.repeat(repeated_runs, runs)
            covered = np.zeros(len(lengths) + 1, dtype=np.int64)  # words inside a repeat
            first = np.flatnonzero(repeated)
            np.add.at(covered, first, 1)
            np.add.at(covered, first + n, -1)
            fraction = int(lengths[np.cumsum(covered[:-1]) > 0].sum()) / total
            if fraction > limit:
                return False
            # words covered by repeated longer n-grams are a subset of these
            if all(fraction <= later for _, later in limits[index + 1 :]):
                return True
        return True

    return check


# ---- C4 ----------------------------------------------------------------------------------
class PunctuationConfig(_Thresholds):
    min_fraction: float = Field(0.12, ge=0, le=1)
    endings: list[str] = Field(default_factory=lambda: [".", "!", "?", '"', "'", "\u201d"])


class PresenceConfig(_Thresholds):
    pass


def _punctuation_lines(config: PunctuationConfig) -> Check:
    endings = tuple(config.endings)

    def check(doc: Document) -> bool:
        if not doc.lines:
            return False
        ending = sum(line.endswith(endings) for line in doc.lines)
        return ending >= config.min_fraction * len(doc.lines)

    return check


def _lorem_ipsum(config: PresenceConfig) -> Check:
    return lambda doc: "lorem ipsum" not in doc.normalized


def _curly_brace(config: PresenceConfig) -> Check:
    return lambda doc: "{" not in doc.text


for _name, _config, _build in [
    ("gopher_length", LengthConfig, _length),
    ("gopher_mean_word_length", MeanWordLengthConfig, _mean_word_length),
    ("gopher_symbol_ratio", RatioConfig, _symbol_ratio),
    ("gopher_bullet_lines", BulletConfig, _bullet_lines),
    ("gopher_ellipsis_lines", EllipsisConfig, _ellipsis_lines),
    ("gopher_alpha_words", AlphaConfig, _alpha_words),
    ("gopher_stop_words", StopWordConfig, _stop_words),
    ("gopher_repeated_lines", RepeatedLinesConfig, _repeated_lines),
    ("gopher_top_ngrams", TopNgramConfig, _top_ngrams),
    ("gopher_duplicate_ngrams", DuplicateNgramConfig, _duplicate_ngrams),
    ("c4_punctuation_lines", PunctuationConfig, _punctuation_lines),
    ("c4_lorem_ipsum", PresenceConfig, _lorem_ipsum),
    ("c4_curly_brace", PresenceConfig, _curly_brace),
]:
    register_filter(_name, _config, _build)


def filter_modules(quality: Mapping[str, Any]) -> list[str]:
    """The modules that registered the user filters a `quality:` section uses: worker
    processes import them so that the filters are registered there too."""
    modules = {check.__module__ for _, _, check in resolve_filters(quality)}
    return sorted(m for m in modules if m != __name__)


def resolve_filters(quality: Mapping[str, Any]) -> list[tuple[str, BaseModel, Check]]:
    """The filters a `quality:` section asks for, in order, each validated and built.

    `preset` names a list (default, gopher, c4, none); every other key names a filter with
    its thresholds (a mapping), `true`/empty for its defaults, or `false` to leave it out."""
    settings = dict(quality)
    preset = settings.pop("preset", "default")
    if preset not in PRESETS:
        raise ConfigError(
            f"quality.preset: {preset!r} is not a preset; accepted: {', '.join(sorted(PRESETS))}"
        )
    chosen: dict[str, Any] = {name: {} for name in PRESETS[preset]}
    for name, value in settings.items():
        if value is False:
            chosen.pop(name, None)
            FILTERS.get(name)  # a typo in a name that is switched off is still an error
        else:
            chosen[name] = {} if value in (None, True) else value
    built = []
    for name, values in chosen.items():
        build = FILTERS.get(name)
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"quality.{name}: expected a mapping of thresholds, true or false, got {values!r}"
            )
        config = build_config(build.Config, dict(values), f"quality.{name}")
        built.append((name, config, build(config)))
    return built
