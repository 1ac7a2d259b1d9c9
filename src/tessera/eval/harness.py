"""Running tasks: prompts, scoring, metrics, one `TaskResult` per (task, shot count).

Under a launcher (several processes in a process group) each rank scores every
`world_size`-th example and the outcomes are gathered, so every rank returns the full result.
Prompts are built for all examples on every rank first, so the few-shot draw is the same as in
a single process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from tessera.core import world as ranks
from tessera.core.errors import ConfigError
from tessera.eval import metrics, scoring
from tessera.eval.models import EvalModel
from tessera.eval.prompts import Prompted, build_prompts
from tessera.eval.tasks import TaskData

# Called with (label, total units) when a task starts; returns the per-batch advance function.
ProgressFactory = Callable[[str, int], "scoring.Progress"]


@dataclass
class TaskResult:
    """The outcome of one task at one shot count."""

    task: str
    num_fewshot: int
    metrics: dict[str, float]
    metric: str  # the task's primary metric
    examples: int
    truncated: int  # examples whose context was cut from the left to fit the model
    seconds: float
    random_baseline: float
    outcomes: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def score(self) -> float:
        return self.metrics[self.metric]

    @property
    def label(self) -> str:
        return f"{self.task}/{self.num_fewshot}-shot"

    def to_dict(self, with_outcomes: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_outcomes:
            data.pop("outcomes")
        data["examples_per_second"] = self.examples / max(self.seconds, 1e-9)
        return data


def evaluate_task(
    model: EvalModel,
    task: TaskData,
    num_fewshot: int,
    batch_size: int = 32,
    limit: int | None = None,
    progress: ProgressFactory | None = None,
) -> TaskResult:
    """Score one task at one shot count (this rank's share of it, gathered)."""
    if batch_size < 1:
        raise ConfigError(f"batch size {batch_size} must be at least 1.")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit} must be at least 1 (or left out for every example).")
    start = time.perf_counter()
    spec = task.spec
    rank, world = ranks.get_rank(), ranks.get_world_size()
    prompted = build_prompts(task, num_fewshot, limit) if spec.type != "perplexity" else None
    count = len(prompted) if prompted is not None else len(task.examples[:limit])
    mine = list(range(rank, count, world))
    label = spec.name if prompted is None else f"{spec.name} {num_fewshot}-shot"
    outcomes, truncated = _score(model, task, prompted, mine, batch_size, label, progress)
    gathered = ranks.all_gather_objects((mine, outcomes, truncated))
    ordered: list[dict[str, Any]] = [{}] * count
    for indices, part, _ in gathered:
        for index, outcome in zip(indices, part):
            ordered[index] = outcome
    truncated = sum(part[2] for part in gathered)
    return TaskResult(
        task=spec.name,
        num_fewshot=num_fewshot,
        metrics=metrics.aggregate(spec.type, ordered),
        metric=spec.metric,
        examples=count,
        truncated=truncated,
        seconds=time.perf_counter() - start,
        random_baseline=task.random_baseline,
        outcomes=ordered,
    )


def _score(
    model: EvalModel,
    task: TaskData,
    prompted: list[Prompted] | None,
    mine: list[int],
    batch_size: int,
    label: str,
    progress: ProgressFactory | None,
) -> tuple[list[dict[str, Any]], int]:
    """(outcomes of this rank's examples, how many of them were cut from the left)."""
    spec = task.spec
    if spec.type == "generation":
        prompts = [prompted[i].prompt for i in mine]
        advance = _advance(progress, label, len(mine), len(prompts))
        texts, truncated = scoring.generate(
            model, prompts, spec.max_new_tokens, spec.stop, batch_size, advance
        )
        outcomes = [
            metrics.generation_outcome(text, prompted[i].gold, spec.answer_pattern)
            for text, i in zip(texts, mine)
        ]
        return outcomes, truncated
    if spec.type == "perplexity":
        texts = [str(task.examples[i][spec.role("text")]) for i in mine]
        pairs, owners = [], []
        for number, text in enumerate(texts):
            windows = scoring.rolling_pairs(model, text)
            pairs += windows
            owners += [number] * len(windows)
        advance = _advance(progress, label, len(mine), len(pairs))
        scores = scoring.score_pairs(model, pairs, batch_size, advance)
        outcomes = [{"nll": 0.0, "tokens": 0, "bytes": len(t.encode("utf-8"))} for t in texts]
        for owner, ll, tokens in zip(owners, scores.loglikelihood, scores.tokens):
            outcomes[owner]["nll"] -= float(ll)
            outcomes[owner]["tokens"] += int(tokens)
        return outcomes, len({owners[p] for p in scores.truncated.nonzero()[0]})
    pairs, owners = [], []
    for number, i in enumerate(mine):
        pairs += prompted[i].pairs
        owners += [number] * len(prompted[i].pairs)
    advance = _advance(progress, label, len(mine), len(pairs))
    scores = scoring.score_pairs(model, scoring.encode_pairs(model, pairs), batch_size, advance)
    per_example: list[list[int]] = [[] for _ in mine]
    for position, owner in enumerate(owners):
        per_example[owner].append(position)
    outcomes = []
    for number, i in enumerate(mine):
        positions = per_example[number]
        lls = [float(scores.loglikelihood[p]) for p in positions]
        if spec.type == "language_modeling":
            greedy = bool(scores.greedy[positions[0]])
            outcomes.append({"loglikelihood": lls[0], "acc": float(greedy)})
        else:
            lengths = prompted[i].choice_lengths if spec.type == "multiple_choice" else None
            outcomes.append(metrics.choice_outcome(lls, prompted[i].gold, lengths))
    return outcomes, len({owners[p] for p in scores.truncated.nonzero()[0]})


def _advance(
    progress: ProgressFactory | None, label: str, examples: int, units: int
) -> scoring.Progress | None:
    """A progress callback counting examples, fed with pairs (or prompts) done."""
    if progress is None or units == 0:
        return None
    step = progress(label, examples)
    share = examples / units
    return lambda done: step(done * share)


def evaluate(
    model: EvalModel,
    tasks: Sequence[TaskData],
    shots: Sequence[int] | None = None,
    batch_size: int = 32,
    limit: int | None = None,
    progress: ProgressFactory | None = None,
) -> list[TaskResult]:
    """Every task at every shot count (`shots`, or each task's own `num_fewshot` list)."""
    results = []
    for task in tasks:
        for count in shots if shots is not None else task.spec.num_fewshot:
            results.append(evaluate_task(model, task, count, batch_size, limit, progress))
    return results


@contextmanager
def console_progress(enabled: bool = True) -> Iterator[ProgressFactory | None]:
    """A rich progress bar per task (examples/s from the pairs scored), rank 0 only."""
    if not enabled or ranks.get_rank() != 0:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, transient=False) as bar:

        def start(label: str, total: int) -> scoring.Progress:
            task_id = bar.add_task(label, total=total, rate="")
            began = time.perf_counter()

            def advance(units: int) -> None:
                bar.advance(task_id, units)
                done = bar.tasks[task_id].completed
                rate = done / max(time.perf_counter() - began, 1e-9)
                bar.update(task_id, rate=f"{rate:,.0f}/s")

            return advance

        yield start
