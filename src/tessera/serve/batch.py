"""Offline batch inference: a JSONL file of requests in, a JSONL file of completions out.

Each input line is one request in the HTTP API's shape without `model`: `{"prompt": ...}` for
a completion or `{"messages": [...]}` for a chat turn, with the same optional options
(`max_tokens`, `temperature`, `top_p`, `top_k`, `stop`, `seed`, `n`, ...) and an optional
`id`. Every line is validated before any work starts; an error names the line and the field.
Output lines keep the input order: `{"id", "choices": [{"index", "text", "finish_reason"}],
"usage"}`, written to a temporary file and renamed when all are done.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera.core.errors import DataError, UserError
from tessera.serve.chat_template import ChatTemplate
from tessera.serve.engine import Engine
from tessera.serve.offline import Job, run_jobs
from tessera.serve.protocol import APIError, ChatRequest, CompletionRequest, parse_request
from tessera.serve.sampling import Sampling


@dataclass
class BatchItem:
    id: Any
    prompt: list[int]
    sampling: Sampling
    n: int


def read_batch(
    path: str | Path, engine: Engine, template: ChatTemplate, defaults: dict[str, Any]
) -> list[BatchItem]:
    """Parse and check every line of `path` (a `DataError` names the first bad one)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DataError(f"--input {path}: cannot be read ({error.strerror}).") from None
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: not valid JSON ({error}).") from None
        if not isinstance(data, dict):
            raise DataError(
                f"{where}: each line must be a JSON object with 'prompt' or 'messages'."
            )
        try:
            items.append(_item(data, number, engine, template, defaults))
        except UserError as error:
            message = error.message if isinstance(error, APIError) else str(error)
            raise DataError(f"{where}: {message}") from None
    if not items:
        raise DataError(f"--input {path}: no requests in it (one JSON object a line).")
    return items


def _item(
    data: dict[str, Any],
    number: int,
    engine: Engine,
    template: ChatTemplate,
    defaults: dict[str, Any],
) -> BatchItem:
    identifier = data.pop("id", number)
    body = {**defaults, **data, "model": "batch"}
    if "messages" in data:
        request = parse_request(body, ChatRequest)
        prompt = engine.encode(template.render([(m.role, m.text()) for m in request.messages]))
        stop, max_tokens = request.stop_list() + template.stop, request.token_limit()
    else:
        request = parse_request(body, CompletionRequest)
        if not isinstance(request.prompt, str):
            raise APIError(
                "prompt: in a batch file each line holds one prompt string.", param="prompt"
            )
        prompt = engine.encode(request.prompt)
        stop, max_tokens = request.stop_list(), request.max_tokens
    sampling = Sampling(
        max_new_tokens=max_tokens or defaults.get("max_tokens") or 200,
        temperature=request.temperature,
        top_k=request.top_k_value(),
        top_p=request.top_p if request.top_p < 1.0 else None,
        stop=stop,
        seed=request.seed,
        ignore_eos=request.ignore_eos,
    )
    engine.check_request(prompt, sampling, slide=True)
    return BatchItem(identifier, prompt, sampling, request.n)


def run_batch(engine: Engine, items: list[BatchItem], output: str | Path) -> int:
    """Complete every item and write the output file; returns the number of lines written."""
    jobs = [Job(item.prompt, item.sampling, choice) for item in items for choice in range(item.n)]
    results = iter(run_jobs(engine, jobs))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(output.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        for item in items:
            completions = [next(results) for _ in range(item.n)]
            generated = sum(c.completion_tokens for c in completions)
            record = {
                "id": item.id,
                "choices": [
                    {"index": i, "text": c.text, "finish_reason": c.finish_reason}
                    for i, c in enumerate(completions)
                ],
                "usage": {
                    "prompt_tokens": len(item.prompt),
                    "completion_tokens": generated,
                    "total_tokens": len(item.prompt) + generated,
                },
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(temporary, output)
    return len(items)
