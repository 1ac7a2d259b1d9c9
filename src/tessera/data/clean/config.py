"""The settings of one clean: what to read, which steps run, and every threshold.

Every field has a range; a value outside it is refused naming the field (`near.threshold`),
the value and what is accepted. The resolved settings are written into the report and the
provenance manifest, so a clean can be repeated exactly.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tessera.core.errors import ConfigError


class ReaderConfig(BaseModel):
    """How input files become documents."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["auto", "text", "jsonl", "parquet"] = Field(
        "auto", description="input format; auto: by suffix (.jsonl/.json, .parquet, else text)"
    )
    text_field: str = Field("text", min_length=1, description="JSONL/Parquet field of the text")
    text_unit: Literal["file", "paragraph", "line"] = Field(
        "file", description="plain text: one document per file, per blank-line paragraph or line"
    )


class DedupConfig(BaseModel):
    """Which duplicates are removed."""

    model_config = ConfigDict(extra="forbid")
    exact: bool = Field(True, description="remove documents whose normalised text repeats")
    near: bool = Field(True, description="remove near-duplicates (MinHash + LSH)")
    segments: Literal["none", "line", "paragraph"] = Field(
        "none", description="also remove lines/paragraphs seen earlier in the corpus"
    )
    segment_min_chars: int = Field(
        20, ge=1, le=10_000, description="shorter lines/paragraphs are never removed as repeats"
    )


class NearConfig(BaseModel):
    """Near-duplicate detection: MinHash signatures of word shingles, banded into LSH buckets."""

    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(
        0.7, gt=0.0, lt=1.0, description="Jaccard similarity of shingle sets that is a duplicate"
    )
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations")
    shingle_words: int = Field(5, ge=1, le=32, description="words per shingle")
    seed: int = Field(1, ge=0, description="seed of the MinHash permutations")
    verify: bool = Field(
        True, description="keep an LSH candidate pair only if its estimated Jaccard >= threshold"
    )
    recall_weight: float = Field(
        0.9,
        gt=0.0,
        lt=1.0,
        description="weight of missed duplicates against spurious candidates when choosing "
        "bands and rows (datasketch's optimisation); with verify, spurious candidates only cost "
        "time, so missing fewer duplicates is worth more (use 0.5 without verify)",
    )


class PIIConfig(BaseModel):
    """Personal data: detect, then count, redact or remove."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["off", "count", "redact", "remove"] = Field(
        "off", description="count only, replace each match by a placeholder, or drop the document"
    )
    kinds: list[Literal["email", "phone", "ip", "card", "secret"]] = Field(
        default_factory=lambda: ["email", "phone", "ip", "card", "secret"]
    )


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    compression: Literal["zstd", "gzip", "none"] = Field(
        "zstd", description="compression of the output part files (JSONL)"
    )
    samples_per_reason: int = Field(
        5, ge=0, le=1000, description="removed documents kept as examples in the report"
    )


class CleanConfig(BaseModel):
    """Everything `tessera data clean` does, as one validated object."""

    model_config = ConfigDict(extra="forbid")
    reader: ReaderConfig = Field(default_factory=ReaderConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    near: NearConfig = Field(default_factory=NearConfig)
    quality: dict[str, Any] = Field(
        default_factory=lambda: {"preset": "default"},
        description="preset (default, gopher, c4, none) plus {filter name: thresholds|false}",
    )
    pii: PIIConfig = Field(default_factory=PIIConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    workers: int = Field(1, ge=1, le=1024, description="worker processes")
    license: str | None = Field(None, description="licence of the data, recorded in the manifest")
    tags: list[str] = Field(default_factory=list, description="tags recorded in the manifest")

    @field_validator("quality")
    @classmethod
    def _quality_mapping(cls, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError("expected a mapping: {preset: default, <filter>: {thresholds}}")
        return value


def parse_config(values: dict[str, Any], source: str = "clean settings") -> CleanConfig:
    """Validate settings, reporting every problem at once with its field path."""
    from tessera.core.component import validate_options

    config, problems = validate_options(CleanConfig, values)
    if config is None:
        raise ConfigError(f"{source}: invalid settings:\n  " + "\n  ".join(problems))
    from tessera.data.clean.filters import resolve_filters

    resolve_filters(config.quality)  # thresholds are checked now, not mid-clean
    return config
