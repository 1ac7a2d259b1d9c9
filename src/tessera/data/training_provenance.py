"""Training provenance: the record of which data sets trained a model, and its model card.

The `ProvenanceRecorder` callback (tessera.callbacks.provenance) keeps the counts; this module
turns its state into the record (a manifest of kind `training` whose sources are the data
sets, each with the samples and tokens it contributed and its own manifest), finds the record
of a run (its final model folder, or the newest checkpoint of an unfinished run), and renders
the Hugging Face model card. See docs/provenance.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tessera.data.provenance import (
    MANIFEST_NAME,
    TRAINING_STATE_KIND,
    UNKNOWN_SOURCE,
    check_manifest,
    describe,
    dumps,
    new_manifest,
)


def model_card(record: dict[str, Any], title: str) -> str:
    """A Hugging Face model card (README.md) naming the data a model was trained on, its
    licences and its processing, from a training provenance record."""
    licences = record.get("licenses") or []
    header = ["---", "library_name: transformers", "tags:", "- tessera"]
    if len(licences) == 1:
        header.append(f"license: {licences[0].lower()}")
    header += ["---", ""]
    totals = record.get("totals", {})
    lines = [*header, f"# {title}", ""]
    lines.append(
        f"Trained with Tessera {record.get('tool', {}).get('version')} (run `{record.get('run')}`) "
        f"on {totals.get('tokens', 0):,} tokens ({totals.get('samples', 0):,} samples)."
    )
    lines += ["", "## Training data", "", "| data set | licence | tags | samples | tokens |"]
    lines.append("| --- | --- | --- | ---: | ---: |")
    for source in record.get("sources", []):
        manifest = source.get("manifest")
        licence = (manifest or {}).get("license") or (
            "unknown" if manifest is None else "not given"
        )
        tags = ", ".join((manifest or {}).get("tags", [])) or (
            UNKNOWN_SOURCE if manifest is None else ""
        )
        lines.append(
            f"| `{source['path']}` | {licence} | {tags} | {source.get('samples', 0):,} "
            f"| {source.get('tokens', 0):,} |"
        )
    lines += ["", f"Licences of the training data: {', '.join(licences) or 'none recorded'}.", ""]
    lines += ["## Provenance", "", "```"]
    for source in record.get("sources", []):
        lines.append(source["path"])
        lines.extend(describe(source.get("manifest"), "  "))
    lines += ["```", "", "The full record is in provenance.json beside this file.", ""]
    return "\n".join(lines)


def training_record(run_name: str, recorder_state: dict[str, Any]) -> dict[str, Any]:
    """The training provenance of a run from its recorder's state: every data set with the
    samples and tokens it contributed and its manifest ("unknown source" when it has none)."""
    sources = []
    for entry in recorder_state["datasets"]:
        source = {k: entry[k] for k in ("samples", "tokens", "manifest")}
        source = {"path": entry["name"], **source}
        if entry["manifest"] is None:
            source["source"] = UNKNOWN_SOURCE
        sources.append(source)
    totals = {
        "samples": sum(s["samples"] for s in sources),
        "tokens": sum(s["tokens"] for s in sources),
        "batches": recorder_state["batches"],
    }
    record = new_manifest("training", sources, [], totals=totals)
    record["run"] = run_name
    return record


def run_provenance(path: str | Path) -> dict[str, Any] | None:
    """The training provenance of a run folder or model folder: its `provenance.json` (in it
    or in `final/`), or for an unfinished run the record in its newest checkpoint."""
    path = Path(path)
    for candidate in (path / MANIFEST_NAME, path / "final" / MANIFEST_NAME):
        if candidate.is_file():
            record = check_manifest(json.loads(candidate.read_text("utf-8")), str(candidate))
            if record.get("kind") == "training":
                return record
    from tessera.core.checkpointer import FileCheckpointer, read_checkpoint

    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    newest = FileCheckpointer(folder).latest_valid() if folder.is_dir() else None
    if newest is None or newest.is_dir():  # a sharded checkpoint keeps it in train-state files
        return None
    saved = read_checkpoint(newest)
    for entry in saved.get("callbacks", []):
        if isinstance(entry, dict) and entry.get("kind") == TRAINING_STATE_KIND:
            record = training_record(str(saved.get("run_name", path.name)), entry)
            record["checkpoint"] = str(newest)
            return record
    return None


def write_model_card(folder: str | Path, trained_from: str | Path | None) -> bool:
    """Write README.md (and provenance.json) into an exported model folder from the training
    record of the run or model at `trained_from`; False when that has no record."""
    if trained_from is None:
        return False
    from tessera.core.files import atomic_write

    record = run_provenance(trained_from)
    if record is None:
        return False
    folder = Path(folder)
    card = model_card(record, str(record.get("run") or folder.name)).encode("utf-8")
    atomic_write(folder / "README.md", lambda file: file.write(card))
    atomic_write(folder / MANIFEST_NAME, lambda file: file.write(dumps(record)))
    return True
