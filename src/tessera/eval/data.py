"""Where evaluation data lives, and reading it: JSONL files, one example per line.

Task files are found through the data root (`tessera.data.root`): a task's `data_dir` or
`--data-dir` when given, else `ROOT/eval/` (`tessera data download eval` puts the bundled sets
there; put your own task files beside them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tessera.core.errors import DataError
from tessera.data.root import find_file


def find_eval_file(name: str, data_dir: str | Path | None = None) -> Path:
    """The path of evaluation file `name` (e.g. 'piqa.jsonl'), or a DataError naming where we
    looked. An absolute `name` (or one relative to the working folder that exists) is used as
    it is."""
    given = Path(name).expanduser()
    if given.is_absolute() or given.is_file():
        if given.is_file():
            return given
        raise DataError(f"evaluation file {str(given)!r} does not exist.")
    return find_file("eval", name, data_dir)


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
