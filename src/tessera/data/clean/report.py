"""The report of a clean (JSON for programs, markdown for people) and its provenance steps.

Tokens are whitespace-separated words (a clean runs before any tokenizer exists).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tessera.data.clean.config import CleanConfig
from tessera.data.clean.filters import resolve_filters
from tessera.data.provenance import step

STEP_REASONS = ["empty", "exact_duplicate", "near_duplicate", "segments_emptied", "pii"]


def build_report(
    config: CleanConfig,
    scans: list[dict[str, Any]],
    merge: dict[str, Any],
    parts: list[dict[str, Any]],
    seconds: float,
) -> dict[str, Any]:
    filters = [(name, settings) for name, settings, _ in resolve_filters(config.quality)]
    removed: dict[str, Counter[str]] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    pii: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    for part in parts:
        kept.update(part["kept"])
        pii.update(part["pii"])
        for reason, values in part["removed"].items():
            removed.setdefault(reason, Counter()).update(values)
        for reason, examples in part["samples"].items():
            room = config.output.samples_per_reason - len(samples.setdefault(reason, []))
            samples[reason].extend(examples[: max(room, 0)])
    order = [r for r in STEP_REASONS if r in removed] + [n for n, _ in filters if n in removed]
    undecodable = [
        {"file": s["url"], "bytes": s["undecodable_bytes"], "offsets": s["undecodable_offsets"]}
        for s in scans
        if s["undecodable_bytes"]
    ]
    return {
        "inputs": {
            "files": len(scans),
            "bytes": sum(s["raw_bytes"] for s in scans),
            "documents": sum(s["documents"] for s in scans),
            "tokens": sum(s["tokens"] for s in scans),
            "characters": sum(s["characters"] for s in scans),
            "undecodable_bytes": sum(s["undecodable_bytes"] for s in scans),
            "undecodable": undecodable,
        },
        "output": {
            "files": len(parts),
            "bytes": sum(p["file"]["bytes"] for p in parts),
            "documents": kept["documents"],
            "tokens": kept["tokens"],
            "characters": kept["characters"],
        },
        "removed": {reason: dict(removed[reason]) for reason in order},
        "filters": [
            {
                "name": name,
                "thresholds": settings.model_dump(mode="json"),
                "removed": removed.get(name, {}).get("documents", 0),
            }
            for name, settings in filters
        ],
        "dedup": merge,
        "pii": {kind: pii.get(kind, 0) for kind in config.pii.kinds}
        if config.pii.mode != "off"
        else {},
        "samples": {reason: samples[reason] for reason in order if samples.get(reason)},
        "settings": config.model_dump(mode="json"),
        "seconds": round(seconds, 2),
    }


def provenance_steps(config: CleanConfig, report: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps of a clean as the manifest records them: settings and counts of each."""
    removed = report["removed"]

    def count(reason: str) -> int:
        return removed.get(reason, {}).get("documents", 0)

    inputs = report["inputs"]
    steps = [
        step(
            "read",
            config.reader.model_dump(mode="json"),
            documents=inputs["documents"],
            bytes=inputs["bytes"],
            undecodable_bytes=inputs["undecodable_bytes"],
            empty_removed=count("empty"),
        )
    ]
    dedup = report["dedup"]
    if config.dedup.exact:
        steps.append(
            step(
                "exact_dedup",
                {"normalised": True},
                removed=count("exact_duplicate"),
                clusters=dedup.get("exact_clusters"),
            )
        )
    steps.append(
        step(
            "quality_filters",
            {f["name"]: f["thresholds"] for f in report["filters"]},
            removed=sum(f["removed"] for f in report["filters"]),
            per_filter={f["name"]: f["removed"] for f in report["filters"]},
        )
    )
    if config.dedup.near:
        settings = config.near.model_dump(mode="json")
        settings |= {"bands": dedup.get("near_bands"), "rows": dedup.get("near_rows")}
        steps.append(
            step(
                "near_dedup",
                settings,
                removed=count("near_duplicate"),
                clusters=dedup.get("near_clusters"),
            )
        )
    if config.dedup.segments != "none":
        steps.append(
            step(
                "segment_dedup",
                {"unit": config.dedup.segments, "min_chars": config.dedup.segment_min_chars},
                segments_removed=dedup.get("segments_removed", 0),
                documents_emptied=count("segments_emptied"),
            )
        )
    if config.pii.mode != "off":
        steps.append(
            step(
                "pii", config.pii.model_dump(mode="json"), found=report["pii"], removed=count("pii")
            )
        )
    output = report["output"]
    steps.append(
        step(
            "write",
            config.output.model_dump(mode="json"),
            documents=output["documents"],
            tokens=output["tokens"],
        )
    )
    return steps


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown(report: dict[str, Any], title: str) -> str:
    inputs, output = report["inputs"], report["output"]
    lines = [f"# Clean report: {title}", ""]
    lines += [
        "| | documents | tokens (words) | characters | bytes |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines.append(
        f"| in | {_n(inputs['documents'])} | {_n(inputs['tokens'])} | "
        f"{_n(inputs['characters'])} | {_n(inputs['bytes'])} |"
    )
    lines.append(
        f"| out | {_n(output['documents'])} | {_n(output['tokens'])} | "
        f"{_n(output['characters'])} | {_n(output['bytes'])} |"
    )
    lines += [
        "",
        "## Removed",
        "",
        "| reason | documents | tokens (words) |",
        "| --- | ---: | ---: |",
    ]
    for reason, values in report["removed"].items():
        lines.append(f"| {reason} | {_n(values['documents'])} | {_n(values['tokens'])} |")
    lines += [
        "",
        "## Quality filters (in order; a document is counted by the first that rejects it)",
    ]
    lines += ["", "| filter | thresholds | removed |", "| --- | --- | ---: |"]
    for entry in report["filters"]:
        thresholds = ", ".join(f"{k}={v}" for k, v in entry["thresholds"].items())
        lines.append(f"| {entry['name']} | {thresholds} | {_n(entry['removed'])} |")
    dedup = report["dedup"]
    for kind in ("exact", "near"):
        if f"{kind}_clusters" in dedup:
            sizes = ", ".join(f"{k}: {v}" for k, v in dedup[f"{kind}_clusters"].items())
            lines += [
                "",
                f"{kind.capitalize()}-duplicate clusters by size: {sizes}; largest "
                f"{_n(dedup[f'{kind}_largest_cluster'])}.",
            ]
    if "near_bands" in dedup:
        lines.append(
            f"LSH: {dedup['near_bands']} bands x {dedup['near_rows']} rows; "
            f"{_n(dedup['near_candidate_pairs'])} candidate pairs, "
            f"{_n(dedup['near_verified_pairs'])} at or above the threshold."
        )
    if "segments_removed" in dedup:
        lines.append(f"Repeated lines/paragraphs removed: {_n(dedup['segments_removed'])}.")
    if report["pii"]:
        found = ", ".join(f"{kind} {_n(count)}" for kind, count in report["pii"].items())
        lines += ["", f"## Personal data ({report['settings']['pii']['mode']})", "", found + "."]
    if inputs["undecodable"]:
        lines += ["", "## Undecodable bytes (skipped)", ""]
        for entry in inputs["undecodable"]:
            offsets = ", ".join(str(o) for o in entry["offsets"])
            lines.append(
                f"- {entry['file']}: {_n(entry['bytes'])} bytes, first at offsets {offsets}"
            )
    if report["samples"]:
        lines += ["", "## Examples of removed documents"]
        for reason, examples in report["samples"].items():
            lines += ["", f"### {reason}", ""]
            for example in examples:
                text = " ".join(example["text"].split())[:200]
                also = f" (repeats {example['duplicate_of']})" if "duplicate_of" in example else ""
                lines.append(f"- `{example['document']}`{also}: {text}")
    lines += ["", f"Took {report['seconds']} s.", ""]
    return "\n".join(lines)
