"""The gauntlet: tasks grouped into categories, scores rescaled above guessing, averaged.

A task's score s with random baseline b counts as (s - b) / (1 - b): 0 for guessing, 1 for a
perfect model, negative below chance (not clipped, so a broken model shows). A category is the
mean of its tasks, the overall score the mean of the categories (LLM Foundry's gauntlet). The
definition is a YAML file (`gauntlet.yaml` beside this module) a user can copy and edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tessera.core.errors import ConfigError, did_you_mean
from tessera.eval.harness import TaskResult

GAUNTLET_FILE = Path(__file__).with_name("gauntlet.yaml")
_ENTRY_FIELDS = ("task", "num_fewshot", "metric", "random_baseline")


@dataclass(frozen=True)
class Entry:
    task: str
    num_fewshot: int
    metric: str | None = None
    random_baseline: float | None = None


@dataclass
class Gauntlet:
    name: str
    categories: dict[str, list[Entry]]

    @property
    def entries(self) -> list[Entry]:
        return [entry for entries in self.categories.values() for entry in entries]


def is_gauntlet_file(path: Path) -> bool:
    """Whether a YAML file defines a gauntlet (it has `categories`) rather than a task."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "categories" in data


def load_gauntlet(path: str | Path | None = None) -> Gauntlet:
    """The bundled gauntlet, or the one defined in `path`."""
    source = Path(path) if path is not None else GAUNTLET_FILE
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"gauntlet file {source} cannot be read: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("categories"), dict):
        raise ConfigError(f"{source}: a gauntlet has `categories:` mapping names to task lists.")
    categories: dict[str, list[Entry]] = {}
    for category, entries in data["categories"].items():
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{source}: category {category!r} needs a list of tasks.")
        categories[str(category)] = [_entry(item, f"{source}: {category}") for item in entries]
    return Gauntlet(str(data.get("name", source.stem)), categories)


def _entry(item: Any, where: str) -> Entry:
    if isinstance(item, str):
        item = {"task": item}
    if not isinstance(item, dict) or "task" not in item:
        raise ConfigError(f"{where}: each entry is {{task: NAME, num_fewshot: N}}, got {item!r}.")
    for key in item:
        if key not in _ENTRY_FIELDS:
            raise ConfigError(f"{where}: unknown field {key!r}; {did_you_mean(key, _ENTRY_FIELDS)}")
    shots = item.get("num_fewshot", 0)
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 0:
        raise ConfigError(f"{where}: {item['task']}: num_fewshot {shots!r} must be >= 0.")
    return Entry(str(item["task"]), shots, item.get("metric"), item.get("random_baseline"))


def score_gauntlet(
    gauntlet: Gauntlet, results: list[TaskResult], names: dict[str, str] | None = None
) -> dict[str, Any]:
    """Rescaled task scores, category means and the overall mean. `names` maps an entry's
    `task` (a name or a YAML path) to the name its results carry."""
    by_key = {(r.task, r.num_fewshot): r for r in results}
    names = names or {}
    categories: dict[str, Any] = {}
    for category, entries in gauntlet.categories.items():
        scores = {}
        for entry in entries:
            name = names.get(entry.task, Path(entry.task).stem)
            result = by_key.get((name, entry.num_fewshot))
            if result is None:
                continue
            metric = entry.metric or result.metric
            if metric not in result.metrics:
                raise ConfigError(
                    f"gauntlet {gauntlet.name}: {entry.task} has no metric {metric!r}; "
                    f"{did_you_mean(metric, result.metrics)}"
                )
            baseline = (
                entry.random_baseline
                if entry.random_baseline is not None
                else result.random_baseline
            )
            value = result.metrics[metric]
            scores[result.label] = (value - baseline) / (1 - baseline) if baseline < 1 else value
        if scores:
            categories[category] = {
                "score": sum(scores.values()) / len(scores),
                "tasks": scores,
            }
    average = sum(c["score"] for c in categories.values()) / len(categories) if categories else None
    return {"name": gauntlet.name, "categories": categories, "average": average}
