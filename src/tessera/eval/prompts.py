"""From examples to what the model scores: few-shot prompts and (context, continuation) pairs.

Few-shot examples come from the task's own file, drawn by one `random.Random(fewshot_seed)`
consumed example by example in file order: for each example, n + 1 are drawn and the example
itself (and any identical copy) is dropped, so an example never shows its own answer. This is
lm-evaluation-harness's convention, so a 5-shot prompt here is the same text as there.

A few-shot example reads `prompt + target_delimiter + answer + fewshot_delimiter`; the example
under test is `shots + prompt`, and each choice is scored as `target_delimiter + choice`.
Schema tasks (winograd) instead put each option into the context and score the shared
continuation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from tessera.eval.tasks import TaskData, render


@dataclass
class Prompted:
    """One example, ready for the model."""

    pairs: list[tuple[str, str]]  # (context, continuation) to score; one per choice
    gold: Any = None  # the right choice's index, or the answer text (generation)
    choice_lengths: list[int] = field(default_factory=list)  # characters, for acc_norm
    prompt: str = ""  # generation: the text the model continues


def draw_shots(
    pool: list[dict[str, Any]], example: dict[str, Any], count: int, rng: random.Random
) -> list[dict[str, Any]]:
    """`count` examples from `pool`, none equal to `example`."""
    if count == 0:
        return []
    if count + 1 > len(pool):
        others = [item for item in pool if item != example]
        return rng.sample(others, min(count, len(others)))
    shots = [item for item in rng.sample(pool, count + 1) if item != example][:count]
    if len(shots) < count:  # the pool holds copies of the example: draw from the rest
        shots = rng.sample([item for item in pool if item != example], count)
    return shots


def _answer(task: TaskData, example: dict[str, Any], where: str) -> str:
    """The answer text a few-shot example shows after its prompt."""
    spec = task.spec
    if spec.type == "multiple_choice":
        return example[spec.role("choices")][example[spec.role("gold")]]
    if spec.type == "language_modeling":
        return str(example[spec.role("continuation")])
    if spec.type == "generation":
        return render(spec.target or "{" + spec.role("answer") + "}", example, where)
    raise AssertionError(spec.type)


def _shot_text(task: TaskData, shot: dict[str, Any]) -> str:
    spec = task.spec
    where = f"task {spec.name!r} (few-shot example)"
    if spec.type == "schema":
        head = shot[spec.role("context_options")][shot[spec.role("gold")]]
        answer = str(shot[spec.role("continuation")])
    else:
        head = render(spec.prompt_template or "", shot, where)
        answer = _answer(task, shot, where)
    return head + spec.target_delimiter + answer + spec.fewshot_delimiter


def build_prompts(task: TaskData, num_fewshot: int, limit: int | None = None) -> list[Prompted]:
    """The first `limit` examples (all by default) with `num_fewshot` shots each."""
    spec = task.spec
    rng = random.Random(spec.fewshot_seed)
    delimiter = spec.target_delimiter
    prompted = []
    examples = task.examples if limit is None else task.examples[:limit]
    for number, example in enumerate(examples, start=1):
        where = f"{task.path}, line {number}"
        shots = draw_shots(task.examples, example, num_fewshot, rng)
        prefix = "".join(_shot_text(task, shot) for shot in shots)
        if spec.type == "schema":
            continuation = delimiter + str(example[spec.role("continuation")])
            options = example[spec.role("context_options")]
            pairs = [(prefix + option, continuation) for option in options]
            prompted.append(Prompted(pairs, example[spec.role("gold")]))
            continue
        context = prefix + render(spec.prompt_template or "", example, where)
        if spec.type == "multiple_choice":
            choices = example[spec.role("choices")]
            pairs = [(context, delimiter + choice) for choice in choices]
            lengths = [len(choice) for choice in choices]
            prompted.append(Prompted(pairs, example[spec.role("gold")], lengths))
        elif spec.type == "language_modeling":
            pairs = [(context, delimiter + str(example[spec.role("continuation")]))]
            prompted.append(Prompted(pairs))
        elif spec.type == "generation":
            prompted.append(Prompted([], str(example[spec.role("answer")]), prompt=context))
    return prompted
