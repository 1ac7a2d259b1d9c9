"""Provenance manifests: what a data set Tessera wrote is made of and how it was made.

Every data set Tessera writes (a clean, token files, shards) carries `provenance.json`:

    {"format": "tessera.provenance", "format_version": 1, "kind": "clean",
     "created": "2026-...Z", "tool": {"name": "tessera", "version": "0.1.0"},
     "license": "CC-BY-4.0", "tags": ["pii-redacted"],
     "sources": [{"path": ..., "bytes": ..., "hash": "xxh3-128:...", "manifest": {...}}],
     "steps": [{"name": "exact_dedup", "settings": {...}, "counts": {...}}],
     "files": [{"path": "part-00000.jsonl.zst", "bytes": ..., "hash": ...}],
     "totals": {"documents": ..., "tokens": ...}}

A source that is itself a Tessera data set embeds that data set's manifest, so the chain back
to the raw files is never lost; licences and tags of the sources carry forward. A source
without one is recorded as it is (path, size, hash) and marked `"manifest": null`: an
"unknown source" wherever the chain is printed. The manifest is written last, so a data set
whose writing was interrupted has none.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import xxhash

from tessera.core.errors import DataError

MANIFEST_NAME = "provenance.json"
FORMAT = "tessera.provenance"
FORMAT_VERSION = 1
UNKNOWN_SOURCE = "unknown source"
TRAINING_STATE_KIND = "tessera.provenance_recorder"  # the recorder's checkpointed state
SPLIT_NAMES = ("train", "val", "validation", "test", "eval")


def file_hash(path: str | Path) -> str:
    """The xxh3-128 digest of a local file, as recorded in manifests."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(4 << 20), b""):
            digest.update(chunk)
    return "xxh3-128:" + digest.hexdigest()


def file_entry(path: str | Path, relative_to: str | Path | None = None) -> dict[str, Any]:
    """{path, bytes, hash} of a local file (path relative to a folder when given)."""
    path = Path(path)
    name = os.path.relpath(path, relative_to) if relative_to is not None else str(path)
    return {
        "path": name.replace(os.sep, "/"),
        "bytes": path.stat().st_size,
        "hash": file_hash(path),
    }


def _tool() -> dict[str, str]:
    from tessera import __version__

    return {"name": "tessera", "version": __version__}


def new_manifest(
    kind: str,
    sources: list[dict[str, Any]],
    steps: list[dict[str, Any]],
    files: list[dict[str, Any]] | None = None,
    totals: dict[str, Any] | None = None,
    license: str | None = None,
    tags: Iterable[str] = (),
) -> dict[str, Any]:
    """A manifest; licence and tags are the user's plus those of every source manifest."""
    licences = [license] if license else []
    all_tags = list(tags)
    for source in sources:
        upstream = source.get("manifest") or {}
        for name in upstream.get("licenses") or (
            [upstream["license"]] if upstream.get("license") else []
        ):
            if name not in licences:
                licences.append(name)
        for tag in upstream.get("tags", []):
            if tag not in all_tags:
                all_tags.append(tag)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tool": _tool(),
        "license": licences[0] if len(licences) == 1 else (None if not licences else "mixed"),
        "licenses": licences,
        "tags": all_tags,
        "sources": sources,
        "steps": steps,
        "files": files or [],
        "totals": totals or {},
    }


def step(name: str, settings: dict[str, Any] | None = None, **counts: Any) -> dict[str, Any]:
    return {"name": name, "settings": settings or {}, "counts": counts}


def dumps(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=1, sort_keys=False) + "\n").encode("utf-8")


def write_manifest(folder: str, manifest: dict[str, Any], storage_options: Any = None) -> None:
    """Write `folder/provenance.json` atomically (local temp file + rename, or one PUT)."""
    from tessera.data.storage import Storage

    Storage(folder, storage_options).write_bytes(MANIFEST_NAME, dumps(manifest))


def check_manifest(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"{where} is not a Tessera provenance manifest.")
    if data.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{where} has manifest version {data.get('format_version')}; this Tessera reads "
            f"version {FORMAT_VERSION}."
        )
    return data


def read_manifest(location: str, storage_options: Any = None) -> dict[str, Any] | None:
    """The manifest of the data set at `location` (a folder, a file in it, or a split folder
    such as `train/` under it), or None when it has none."""
    from tessera.data.storage import Storage, is_remote

    folder = location.rstrip("/")
    if not is_remote(location) and os.path.isfile(location):
        folder = os.path.dirname(os.path.abspath(location))
    candidates = [folder]
    parent, _, name = folder.rpartition("/")
    if parent and name in SPLIT_NAMES:
        candidates.append(parent)
    for folder in candidates:
        storage = Storage(folder, storage_options)
        try:
            if not storage.exists(MANIFEST_NAME):
                continue
            data = json.loads(storage.read_bytes(MANIFEST_NAME, "provenance manifest"))
        except json.JSONDecodeError as error:
            raise DataError(f"{storage.join(MANIFEST_NAME)} is not valid JSON ({error}).") from None
        return check_manifest(data, storage.join(MANIFEST_NAME))
    return None


def source_entry(
    path: str, size: int | None, content_hash: str | None, manifest: dict[str, Any] | None
) -> dict[str, Any]:
    return {"path": path, "bytes": size, "hash": content_hash, "manifest": manifest}


def path_source(path: str | Path) -> dict[str, Any]:
    """The source entry of a local input: a file (size, hash) or a folder (total size, one
    hash over its files' names, sizes and hashes), with the manifest of its data set if any."""
    path = Path(path).resolve()
    if path.is_file():
        return source_entry(
            str(path), path.stat().st_size, file_hash(path), read_manifest(str(path))
        )
    digest, total = xxhash.xxh3_128(), 0
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        size = item.stat().st_size
        digest.update(f"{item.relative_to(path).as_posix()}\0{size}\0{file_hash(item)}\n".encode())
        total += size
    return source_entry(
        str(path), total, "xxh3-128:" + digest.hexdigest(), read_manifest(str(path))
    )


def dataset_files(inputs: Iterable[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """Expand inputs for reading: a folder written by `tessera data clean` gives its part files
    (an unfinished clean is refused), any other folder its files; returns (files, sources)."""
    files: list[str] = []
    sources: list[dict[str, Any]] = []
    for spec in inputs:
        path = Path(spec)
        if not path.is_dir():
            files.append(spec)
            sources.append(
                path_source(path) if path.is_file() else source_entry(spec, None, None, None)
            )
            continue
        manifest = read_manifest(str(path))
        if manifest is None and (path / ".clean").is_dir():
            raise DataError(
                f"{spec} is an unfinished clean (it has no {MANIFEST_NAME}); run the same "
                "`tessera data clean` command again to finish it."
            )
        if manifest is not None and manifest.get("kind") == "clean":
            members = [path / entry["path"] for entry in manifest["files"]]
            missing = [str(m) for m in members if not m.is_file()]
            if missing:
                raise DataError(
                    f"{spec}: files named in its {MANIFEST_NAME} are missing: {missing[:3]}"
                )
            digest = xxhash.xxh3_128(dumps(manifest)).hexdigest()
            total = sum(entry["bytes"] for entry in manifest["files"])
            sources.append(source_entry(str(path.resolve()), total, "xxh3-128:" + digest, manifest))
        else:
            members = sorted(
                p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
            )
            sources.append(path_source(path))
        files.extend(str(m) for m in members)
    return files, sources


def folder_files(folder: str | Path, names: Iterable[str]) -> list[dict[str, Any]]:
    """File entries for the files among `names` that exist under `folder`."""
    return [file_entry(Path(folder) / n, folder) for n in names if (Path(folder) / n).is_file()]


def write_tokenized_manifest(
    out: str,
    sources: list[dict[str, Any]],
    settings: dict[str, Any],
    summary: dict[str, dict[str, Any]],
    license: str | None = None,
    tags: Iterable[str] = (),
) -> dict[str, Any]:
    """The manifest of `tessera data tokenize`'s output (token files or shards)."""
    shards = settings.get("format") == "shards"
    names = ["tokenizer.json"]
    for split in summary:
        if shards:
            names.append(f"{split}/index.json")
        else:
            names += [
                f"{split}{suffix}" for suffix in (".bin", ".json", ".lengths.npy", ".prompts.npy")
            ]
    counts = {
        f"{split}_{key}": value
        for split, numbers in summary.items()
        for key, value in numbers.items()
    }
    manifest = new_manifest(
        "shards" if shards else "tokens",
        sources,
        [step("tokenize", settings, **counts)],
        files=folder_files(out, names),
        totals={
            "tokens": sum(n.get("tokens", 0) for n in summary.values()),
            "sequences": sum(n.get("sequences", 0) for n in summary.values()),
        },
        license=license,
        tags=tags,
    )
    write_manifest(out, manifest)
    return manifest


def write_converted_manifest(
    out: str,
    source: str,
    settings: dict[str, Any],
    index: dict[str, Any],
    license: str | None = None,
    tags: Iterable[str] = (),
    storage_options: Any = None,
) -> dict[str, Any]:
    """The manifest of `tessera data convert`'s shards; the files are the index's shards."""
    files = [
        {
            "path": shard.get("stored_path") or shard["path"],
            "bytes": shard.get("stored_bytes") or shard["raw_bytes"],
            "hash": f"xxh3-64:{shard.get('stored_hash') or shard.get('raw_hash')}",
        }
        for shard in index["shards"]
    ]
    manifest = new_manifest(
        "shards",
        [path_source(source)],
        [step("convert", settings, samples=index["num_samples"], shards=len(files))],
        files=files,
        totals={"samples": index["num_samples"]},
        license=license,
        tags=tags,
    )
    write_manifest(out, manifest, storage_options)
    return manifest


def describe(manifest: dict[str, Any] | None, indent: str = "") -> list[str]:
    """Human-readable lines: kind, licence, tags, steps and counts, then each source."""
    if manifest is None:
        return [f"{indent}{UNKNOWN_SOURCE} (no provenance manifest)"]
    version = manifest.get("tool", {}).get("version")
    licence = manifest.get("license") or "not given"
    tags = f"; tags: {', '.join(manifest['tags'])}" if manifest.get("tags") else ""
    created = manifest.get("created")
    lines = [
        f"{indent}{manifest['kind']} written {created} by tessera {version}; "
        f"licence: {licence}{tags}"
    ]
    totals = manifest.get("totals") or {}
    if totals:
        lines.append(
            f"{indent}  totals: " + ", ".join(f"{k} {_number(v)}" for k, v in totals.items())
        )
    for entry in manifest.get("steps", []):
        counts = ", ".join(
            f"{k} {_number(v)}"
            for k, v in entry.get("counts", {}).items()
            if not isinstance(v, (dict, list))
        )
        lines.append(f"{indent}  step {entry['name']}" + (f": {counts}" if counts else ""))
    sources = manifest.get("sources", [])
    shown = sources[:20]
    for source in shown:
        size = f", {_number(source['bytes'])} bytes" if source.get("bytes") is not None else ""
        lines.append(f"{indent}  source {source['path']}{size}")
        if source.get("manifest") is not None:
            lines.extend(describe(source["manifest"], indent + "    "))
        elif manifest["kind"] != "clean":  # a clean's raw inputs are the start of the chain
            lines.append(f"{indent}    {UNKNOWN_SOURCE}")
    if len(sources) > len(shown):
        lines.append(f"{indent}  ... and {len(sources) - len(shown)} more sources")
    return lines


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
