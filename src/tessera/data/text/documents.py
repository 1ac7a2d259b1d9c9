"""Reading documents from text and JSONL files.

A `Document` is a prompt (no loss in fine-tuning) and the text to learn. Plain text files give
one document per file (or per non-empty line); JSONL records give a document from a text
field, a `prompt`/`response` (or `completion`) pair, or a chat `messages` list whose last
assistant turn is the response.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera.core.errors import DataError


@dataclass(frozen=True)
class Document:
    text: str
    prompt: str = ""


def render_chat(messages: Sequence[dict[str, Any]], where: str) -> Document:
    """Render chat turns as 'role: content' lines; the last assistant turn is the response."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None:
        raise DataError(f"{where}: a 'messages' list needs at least one assistant turn.")
    prompt = "".join(f"{m['role']}: {m['content']}\n" for m in messages[:last]) + "assistant: "
    return Document(text=str(messages[last]["content"]) + "\n", prompt=prompt)


def _record_document(
    record: Any, text_field: str, where: str, prompt_field: str | None, response_field: str | None
) -> Document:
    if not isinstance(record, dict):
        raise DataError(f"{where}: each JSONL line must be an object, got {type(record).__name__}.")
    if prompt_field is not None and response_field is not None:
        missing = [f for f in (prompt_field, response_field) if f not in record]
        if missing:
            raise DataError(
                f"{where}: no field {missing[0]!r} (fields: {', '.join(sorted(record))})."
            )
        return Document(text=str(record[response_field]), prompt=str(record[prompt_field]))
    if "messages" in record:
        return render_chat(record["messages"], where)
    if "prompt" in record:
        response = record.get("response", record.get("completion"))
        if response is None:
            raise DataError(f"{where}: a record with 'prompt' needs 'response' or 'completion'.")
        return Document(text=str(response), prompt=str(record["prompt"]))
    if text_field not in record:
        raise DataError(
            f"{where}: no field {text_field!r} (fields: {', '.join(sorted(record))}); "
            "choose one with --text-field, or give prompt/response or messages records."
        )
    return Document(text=str(record[text_field]))


def _open_text(path: Path) -> Any:
    """A text stream of a plain, gzip (.gz) or zstd (.zst) file (as `tessera data clean` writes)."""
    if path.suffix == ".gz":
        import gzip

        return gzip.open(path, "rt", encoding="utf-8")
    if path.suffix in (".zst", ".zstd"):
        import io

        import zstandard

        return io.TextIOWrapper(zstandard.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def read_documents(
    paths: Sequence[str | Path],
    text_field: str = "text",
    lines: bool = False,
    prompt_field: str | None = None,
    response_field: str | None = None,
) -> Iterator[Document]:
    """Documents from each file in turn (JSONL by the .jsonl/.json suffix, else plain text).

    With `prompt_field` and `response_field`, each JSONL record is a prompt/response pair taken
    from those fields (e.g. gsm8k's 'context' and 'chain_of_thought')."""
    for raw_path in paths:
        path = Path(raw_path)
        if not path.is_file():
            raise DataError(f"input {str(path)!r} does not exist or is not a file.")
        compressed = path.suffix in (".gz", ".zst", ".zstd")
        if (Path(path.stem) if compressed else path).suffix in (".jsonl", ".json"):
            with _open_text(path) as handle:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    where = f"{path}:{number}"
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise DataError(f"{where}: not valid JSON ({error.msg}).") from None
                    yield _record_document(record, text_field, where, prompt_field, response_field)
        else:
            with _open_text(path) as handle:
                text = handle.read()
            if lines:
                yield from (Document(line) for line in text.splitlines() if line.strip())
            else:
                yield Document(text)
