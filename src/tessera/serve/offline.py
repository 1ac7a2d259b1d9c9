"""In-process use of the engine: run a list of prompts to completion on the calling thread.

`tessera generate`, its batch mode and `tessera chat` use this; the HTTP server runs the same
engine on a background thread instead (`worker.py`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tessera.serve.engine import Engine, EngineConfig, Output, QueueFull, TokenLogprob
from tessera.serve.sampling import Sampling


@dataclass
class Completion:
    """One finished sequence."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, output: Output) -> None:
        self.text += output.text
        self.token_ids += output.token_ids
        self.logprobs += output.logprobs
        self.finish_reason = output.finish_reason
        self.prompt_tokens = output.prompt_tokens
        self.completion_tokens = output.completion_tokens


@dataclass
class Job:
    """A prompt (token ids) with its options; `choice` tells apart samples of one prompt."""

    prompt: list[int]
    sampling: Sampling
    choice: int = 0


def engine_for(model: Any, tokenizer: Any, sequences: int, **options: Any) -> Engine:
    """An engine with no more slots than there are sequences to run."""
    return Engine(model, tokenizer, EngineConfig(max_batch=max(1, min(sequences, 64)), **options))


def run_jobs(
    engine: Engine, jobs: list[Job], slide: bool = True, on_output: Any = None
) -> list[Completion]:
    """Every job's completion, in order. Jobs are fed to the engine as its queue allows;
    `slide` lets sequences continue past the context over a sliding window. `on_output(index,
    output)`, if given, sees each piece as it is produced (the terminal chat streams with it)."""
    for job in jobs:
        engine.check_request(job.prompt, job.sampling, slide)
    results = [Completion() for _ in jobs]
    todo = deque(enumerate(jobs))

    def collector(index: int) -> Any:
        def collect(output: Output) -> None:
            results[index].add(output)
            if on_output is not None:
                on_output(index, output)

        return collect

    while todo or engine.has_work():
        while todo:
            index, job = todo[0]
            try:
                engine.submit(job.prompt, job.sampling, collector(index), job.choice, slide)
            except QueueFull:
                break
            todo.popleft()
        engine.step()
    return results
