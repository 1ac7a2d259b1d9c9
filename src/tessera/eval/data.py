"""Where evaluation data lives, and reading it: JSONL files, one example per line.

`find_eval_file` is the one place that knows the search path, so a future single data root
changes one function. Looked for, in order: an explicit folder (a task's `data_dir` or
`--data-dir`), `$TESSERA_DATA_DIR/eval`, `../shared/data/eval` beside the working folder, and
`../shared/data/eval` beside the source tree.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tessera.core.errors import DataError


def find_eval_file(name: str, data_dir: str | Path | None = None) -> Path:
    """The path of evaluation file `name` (e.g. 'piqa.jsonl'), or a DataError naming where we
    looked. An absolute `name` (or one relative to the working folder that exists) is used as
    it is."""
    given = Path(name).expanduser()
    if given.is_absolute() or given.is_file():
        if given.is_file():
            return given
        raise DataError(f"evaluation file {str(given)!r} does not exist.")
    if data_dir is not None:
        folders = [Path(data_dir).expanduser()]
    else:
        folders = []
        if os.environ.get("TESSERA_DATA_DIR"):
            folders.append(Path(os.environ["TESSERA_DATA_DIR"]).expanduser() / "eval")
        folders.append(Path.cwd().parent / "shared" / "data" / "eval")
        folders.append(Path(__file__).resolve().parents[4] / "shared" / "data" / "eval")
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    raise DataError(
        f"evaluation file {name!r} not found; looked in "
        + ", ".join(str(folder) for folder in folders)
        + ". Put the file in one of these folders, set TESSERA_DATA_DIR (the file is then "
        "read from $TESSERA_DATA_DIR/eval/), or pass --data-dir FOLDER."
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every example of a JSONL file; a line that is not a JSON object is refused by number."""
    examples: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"evaluation file {path} cannot be read: {error}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            example = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(
                f"{path}, line {number}: not valid JSON ({error.msg} at column {error.colno}); "
                "each line of an evaluation file must be one JSON object."
            ) from None
        if not isinstance(example, dict):
            raise DataError(
                f"{path}, line {number}: a JSON {type(example).__name__}, not an object; each "
                "line of an evaluation file must be one JSON object such as "
                '{"query": ..., "choices": [...], "gold": 0}.'
            )
        examples.append(example)
    return examples
