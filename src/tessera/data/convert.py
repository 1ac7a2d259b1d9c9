"""Convert common sources to shards: a folder of images by class, JSONL, CSV, text files, and
Fashion-MNIST IDX files. Each converter yields samples; `convert` writes them, with a progress
bar."""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tessera.core.errors import DataError, did_you_mean
from tessera.data.writer import ShardWriter, parse_size

IMAGE_SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".bmp": "bmp"}
Source = tuple[dict[str, str], int | None, Iterator[dict[str, Any]]]  # columns, count, samples


def image_folder(path: Path) -> Source:
    """`path/<class name>/<image file>`: columns image (encoded bytes, as stored), label, class."""
    classes = sorted(p.name for p in path.iterdir() if p.is_dir())
    files = [
        (label, f)
        for label, name in enumerate(classes)
        for f in sorted((path / name).iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise DataError(
            f"No images found in {path}: expected one sub-folder per class holding "
            f"{', '.join(IMAGE_SUFFIXES)} files."
        )
    formats = {IMAGE_SUFFIXES[f.suffix.lower()] for _, f in files}
    if len(formats) > 1:
        raise DataError(f"{path} mixes image formats {sorted(formats)}; convert them to one.")
    columns = {"image": f"image:{formats.pop()}", "label": "int", "class": "str"}
    samples = (
        {"image": f.read_bytes(), "label": label, "class": classes[label]} for label, f in files
    )
    return columns, len(files), samples


def jsonl(path: Path) -> Source:
    """One JSON object per line; column types come from the first record (others: json)."""
    with open(path, encoding="utf-8") as file:
        first_line = file.readline()
        count = 1 + sum(1 for line in file if line.strip())
    try:
        first = json.loads(first_line)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: line 1 is not JSON ({error}).") from None
    if not isinstance(first, dict):
        raise DataError(f"{path}: line 1 is not a JSON object; each line must be one object.")
    columns = {key: _json_type(value) for key, value in first.items()}

    def samples() -> Iterator[dict[str, Any]]:
        with open(path, encoding="utf-8") as file:
            for number, line in enumerate(file, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as error:
                        raise DataError(f"{path}: line {number} is not JSON ({error}).") from None

    return columns, count, samples()


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "json"
    return {str: "str", int: "int", float: "float"}.get(type(value), "json")


def csv_file(path: Path) -> Source:
    """A CSV file with a header row; a column is int or float when every value parses so."""
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        raise DataError(f"{path} has no data rows (a header row and at least one row needed).")
    columns = {}
    for name in rows[0]:
        values = [row[name] for row in rows]
        columns[name] = "int" if _all(values, int) else "float" if _all(values, float) else "str"
    casts = {"int": int, "float": float, "str": str}
    samples = ({k: casts[columns[k]](v) for k, v in row.items()} for row in rows)
    return columns, len(rows), samples


def _all(values: list[str], kind: type) -> bool:
    try:
        for value in values:
            kind(value)
    except ValueError:
        return False
    return True


def text_files(path: Path) -> Source:
    """One sample per text file (a file or every *.txt under a folder): columns text, path."""
    files = [path] if path.is_file() else sorted(path.rglob("*.txt"))
    if not files:
        raise DataError(f"No text files found at {path} (a file, or a folder with *.txt files).")
    samples = (
        {"text": f.read_text(encoding="utf-8"), "path": str(f.relative_to(path.parent))}
        for f in files
    )
    return {"text": "str", "path": "str"}, len(files), samples


def fashion_mnist(path: Path, split: str = "train", image_format: str = "png") -> Source:
    """Fashion-MNIST IDX files (gzipped or not) in `path`: columns image, label. `image_format`
    "png" stores PNG-encoded images; "raw" stores the 784 raw bytes as ndarray:uint8:28,28."""
    from tessera.data.fashion_mnist import read_idx

    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise DataError(f"Fashion-MNIST split {split!r} is not known; use 'train' or 'test'.")
    found = {}
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        candidates = [path / f"{prefix}-{kind}.gz", path / f"{prefix}-{kind}"]
        hit = next((c for c in candidates if c.exists()), None)
        if hit is None:
            raise DataError(f"{candidates[0]} (or without .gz) not found in {path}.")
        found[kind] = hit
    images = read_idx(found["images-idx3-ubyte"])
    labels = read_idx(found["labels-idx1-ubyte"])
    if image_format == "raw":
        columns = {"image": "ndarray:uint8:28,28", "label": "int"}
    else:
        columns = {"image": f"image:{image_format}", "label": "int"}
    samples = ({"image": images[i], "label": int(labels[i])} for i in range(len(labels)))
    return columns, len(labels), samples


SOURCES = {
    "images": image_folder,
    "jsonl": jsonl,
    "csv": csv_file,
    "text": text_files,
    "fashion-mnist": fashion_mnist,
}


AUTO_SHARDS = 64  # `shard_size="auto"`: enough shards for 8 ranks x 8 workers to each read one
AUTO_LIMITS = (256 * 2**10, 64 * 2**20)  # ... but no shard under 256 KiB or over 64 MiB


def parse_shard_size(value: str) -> int | str:
    """`--shard-size`: 'auto' or a size such as '64MiB' (a DataError names what is accepted)."""
    return "auto" if value == "auto" else parse_size(value, "shard size")


def auto_shard_size(columns: dict[str, str], count: int | None, first: list[dict[str, Any]]) -> int:
    """A shard size that cuts `count` samples like `first` into about AUTO_SHARDS shards."""
    from tessera.data.columns import parse_columns
    from tessera.data.format import encode_sample

    parsed = parse_columns(columns)
    sizes = [len(encode_sample(parsed, sample, f"#{i}")) for i, sample in enumerate(first)]
    if not sizes or not count:
        return AUTO_LIMITS[1]
    total = count * (sum(sizes) / len(sizes) + 12)  # + offset and checksum entries
    return int(min(max(total / AUTO_SHARDS, AUTO_LIMITS[0]), AUTO_LIMITS[1]))


def convert(
    kind: str,
    source: str,
    out: str,
    compression: str | None = "zstd",
    shard_size: int | str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    storage_options: dict[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Convert `source` of the given kind into shards at `out`; returns the index.
    `shard_size="auto"` aims at AUTO_SHARDS shards (see `auto_shard_size`)."""
    if kind not in SOURCES:
        raise DataError(f"Unknown source kind {kind!r}; {did_you_mean(kind, SOURCES)}")
    path = Path(source)
    if not path.exists() and kind == "fashion-mnist" and source == "fashion-mnist":
        from tessera.data.root import find_folder

        path = find_folder("fashion-mnist")  # the bundled data set, by name
    if not path.exists():
        raise DataError(f"The {kind} source {source} does not exist.")
    columns, count, samples = SOURCES[kind](path, **options)
    if shard_size == "auto":
        first = list(itertools.islice(samples, 64))
        shard_size = auto_shard_size(columns, count, first)
        samples = itertools.chain(first, samples)
    from rich.progress import Progress

    writer = ShardWriter(
        out,
        columns,
        compression=compression,
        shard_size=shard_size,
        overwrite=overwrite,
        storage_options=storage_options,
    )
    with writer, Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"converting {os.path.basename(source)}", total=count)
        for sample in samples:
            writer.write(sample)
            bar.advance(task)
    return writer.index
