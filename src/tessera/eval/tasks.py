"""Tasks as data: a YAML file names the JSONL file, the task type, the fields and the prompt.

    name: piqa
    type: multiple_choice          # or schema, language_modeling, generation, perplexity
    data: piqa.jsonl               # found through `find_eval_file` (the data search path)
    fields: {choices: choices, gold: gold}   # role -> JSONL key (these are the defaults)
    prompt: "{query}Answer:"       # the example's text; {key} is a JSONL field
    target_delimiter: " "          # between prompt and answer
    fewshot_delimiter: "\\n\\n"     # after each few-shot example
    num_fewshot: [0, 5]            # the shot counts run by default

Bundled tasks live beside this module in tasks/*.yaml; a path to a YAML file works too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tessera.core.errors import ConfigError, DataError, did_you_mean
from tessera.eval.data import find_eval_file, read_jsonl

TASK_FOLDER = Path(__file__).with_name("tasks")
TaskType = Literal["multiple_choice", "schema", "language_modeling", "generation", "perplexity"]

# Each type's roles and the JSONL key each reads by default.
ROLES: dict[str, dict[str, str]] = {
    "multiple_choice": {"choices": "choices", "gold": "gold"},
    "schema": {
        "context_options": "context_options",
        "continuation": "continuation",
        "gold": "gold",
    },
    "language_modeling": {"continuation": "continuation"},
    "generation": {"answer": "answer"},
    "perplexity": {"text": "text"},
}
DEFAULT_PROMPTS = {
    "multiple_choice": "{query}",
    "language_modeling": "{context}",
    "generation": "{context}",
}
METRICS = {
    "multiple_choice": ("acc", "acc_norm"),
    "schema": ("acc",),
    "language_modeling": ("acc", "perplexity"),
    "generation": ("exact_match",),
    "perplexity": ("perplexity", "bits_per_byte"),
}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TaskSpec(BaseModel):
    """One evaluation task, as written in its YAML file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="the task's name in results and on the command line")
    type: TaskType = Field(description="how examples are scored")
    data: str = Field(description="the JSONL file, looked up on the data search path")
    data_dir: str | None = Field(None, description="a folder to read `data` from instead")
    description: str = ""
    fields: dict[str, str] = Field(default_factory=dict, description="role -> JSONL key")
    prompt: str | None = Field(None, description="the example's text, {key} = a JSONL field")
    target: str | None = Field(None, description="generation: a few-shot example's answer")
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    num_fewshot: list[int] = Field(default_factory=lambda: [0])
    fewshot_seed: int = 1234
    stop: list[str] = Field(default_factory=lambda: ["\n\n"])
    max_new_tokens: int = 256
    answer_pattern: str | None = Field(
        None, description="generation: regex whose group 1 is the answer (default: last number)"
    )
    primary_metric: str | None = None

    def role(self, name: str) -> str:
        """The JSONL key that holds role `name`."""
        return self.fields.get(name, ROLES[self.type][name])

    @property
    def metric(self) -> str:
        """The metric the gauntlet and summaries use."""
        return self.primary_metric or METRICS[self.type][0]

    @property
    def prompt_template(self) -> str | None:
        return self.prompt if self.prompt is not None else DEFAULT_PROMPTS.get(self.type)


def parse_task(data: Any, source: str) -> TaskSpec:
    """A `TaskSpec` from parsed YAML, with errors that name the file and the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a task file is a mapping (name, type, data, ...).")
    for key in data:
        if key not in TaskSpec.model_fields:
            raise ConfigError(
                f"{source}: unknown field {key!r}; {did_you_mean(str(key), TaskSpec.model_fields)}"
            )
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(
            f"{source}: {where}: {first['msg']} (got {first.get('input')!r})"
        ) from None
    unknown_roles = set(spec.fields) - set(ROLES[spec.type])
    if unknown_roles:
        role = sorted(unknown_roles)[0]
        raise ConfigError(
            f"{source}: fields.{role} is not a role of a {spec.type} task; "
            f"{did_you_mean(role, ROLES[spec.type])}"
        )
    if any(shots < 0 for shots in spec.num_fewshot) or not spec.num_fewshot:
        raise ConfigError(f"{source}: num_fewshot {spec.num_fewshot} must list counts >= 0.")
    return spec


def bundled_tasks() -> dict[str, Path]:
    """Task name -> YAML file, for the tasks shipped with Tessera."""
    return {path.stem: path for path in sorted(TASK_FOLDER.glob("*.yaml"))}


def load_task(name: str) -> TaskSpec:
    """A bundled task by name, or a task YAML file by path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return parse_task(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))
    known = bundled_tasks()
    if name not in known:
        raise ConfigError(
            f"unknown task {name!r}; {did_you_mean(name, [*known, 'gauntlet'])} "
            "(or give the path of a task YAML file)"
        )
    return parse_task(yaml.safe_load(known[name].read_text(encoding="utf-8")), str(known[name]))


def render(template: str, example: dict[str, Any], where: str) -> str:
    """`template` with each {key} replaced by the example's value (no other syntax)."""

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in example:
            raise DataError(
                f"{where}: the prompt names field {key!r}; {did_you_mean(key, example)}"
            )
        return str(example[key])

    return _PLACEHOLDER.sub(value, template)


@dataclass
class TaskData:
    """A task with its examples, checked against the roles its type needs."""

    spec: TaskSpec
    path: Path
    examples: list[dict[str, Any]]

    @classmethod
    def load(cls, spec: TaskSpec, data_dir: str | Path | None = None) -> TaskData:
        path = find_eval_file(spec.data, spec.data_dir or data_dir)
        if spec.type == "perplexity" and path.suffix == ".txt":  # a plain text: one example
            examples = [{spec.role("text"): path.read_text(encoding="utf-8")}]
        else:
            examples = read_jsonl(path)
        if not examples:
            raise DataError(
                f"task {spec.name!r}: {path} holds no examples; an empty task is refused."
            )
        task = cls(spec, path, examples)
        for number, example in enumerate(examples, start=1):
            task.check(example, f"{path}, line {number}")
        return task

    def check(self, example: dict[str, Any], where: str) -> None:
        spec = self.spec
        for role in ROLES[spec.type]:
            key = spec.role(role)
            if key not in example:
                raise DataError(
                    f"{where}: task {spec.name!r} reads field {key!r} (its {role}), which this "
                    f"example lacks; {did_you_mean(key, example)} Set fields.{role} in the task "
                    "file to the key that holds it."
                )
        for template in (spec.prompt_template, spec.target):
            if template is not None:
                render(template, example, where)
        if spec.type in ("multiple_choice", "schema"):
            options = example[
                spec.role("choices" if spec.type == "multiple_choice" else "context_options")
            ]
            gold = example[spec.role("gold")]
            if (
                not isinstance(options, list)
                or len(options) < 2
                or not all(isinstance(o, str) for o in options)
            ):
                raise DataError(
                    f"{where}: needs a list of two or more strings to choose from, got {options!r}."
                )
            if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(options):
                raise DataError(
                    f"{where}: gold {gold!r} is not an index into its {len(options)} options."
                )

    @cached_property
    def random_baseline(self) -> float:
        """Accuracy of guessing: the mean of 1/options for choice tasks, 0 otherwise."""
        spec = self.spec
        if spec.type not in ("multiple_choice", "schema"):
            return 0.0
        key = spec.role("choices" if spec.type == "multiple_choice" else "context_options")
        return sum(1 / len(example[key]) for example in self.examples) / len(self.examples)
