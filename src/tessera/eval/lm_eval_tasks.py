"""lm-evaluation-harness task YAMLs equivalent to Tessera tasks, reading the same JSONL files.

So a user (and the agreement test, and the benchmark) can run lm-eval 0.4.x on exactly the
prompts Tessera scores: `lm_eval --model hf --model_args pretrained=HF_FOLDER --include_path
FOLDER --tasks tessera_piqa`. The files name the local JSONL path, so no hub access is needed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tessera.core.errors import ConfigError
from tessera.core.files import atomic_write
from tessera.eval.tasks import TaskData

PREFIX = "tessera_"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _text(template: str) -> str:
    """A Tessera prompt template as lm-eval's doc_to_text: a bare field name when the template
    is just one field (lm-eval then returns the value as it is), otherwise Jinja."""
    whole = _PLACEHOLDER.fullmatch(template)
    if whole:
        return whole.group(1)
    return _PLACEHOLDER.sub(lambda m: "{{" + m.group(1) + "}}", template)


def lm_eval_config(task: TaskData, num_fewshot: int | None = None) -> dict[str, Any]:
    """The lm-eval task config (as a dict) for one Tessera task; with `num_fewshot`, the task
    is named `tessera_<name>_<n>shot` and runs at that count."""
    spec = task.spec
    suffix = f"_{num_fewshot}shot" if num_fewshot is not None else ""
    config: dict[str, Any] = {
        "task": PREFIX + spec.name + suffix,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(task.path.resolve())}},
        "test_split": "test",
        "fewshot_split": "test",
        "fewshot_delimiter": spec.fewshot_delimiter,
    }
    if num_fewshot is not None:
        config["num_fewshot"] = num_fewshot
    mean = {"aggregation": "mean", "higher_is_better": True}
    if spec.type == "multiple_choice":
        config.update(
            output_type="multiple_choice",
            doc_to_text=_text(spec.prompt_template or ""),
            doc_to_choice=spec.role("choices"),
            doc_to_target=spec.role("gold"),
            target_delimiter=spec.target_delimiter,
            metric_list=[{"metric": "acc", **mean}, {"metric": "acc_norm", **mean}],
        )
    elif spec.type == "schema":
        config.update(
            output_type="multiple_choice",
            doc_to_text=spec.role("gold"),  # an index: lm-eval's "multiple inputs" mode
            doc_to_choice=spec.role("context_options"),
            doc_to_target=spec.role("continuation"),
            target_delimiter=spec.target_delimiter,
            metric_list=[{"metric": "acc", **mean}],
        )
    elif spec.type == "language_modeling":
        # lm-eval adds no delimiter to a loglikelihood target: it is part of the target.
        config.update(
            output_type="loglikelihood",
            doc_to_text=_text(spec.prompt_template or ""),
            doc_to_target=spec.target_delimiter + "{{" + spec.role("continuation") + "}}",
            target_delimiter="",
            metric_list=[
                {"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False},
                {"metric": "acc", **mean},
            ],
        )
    else:
        raise ConfigError(
            f"task {spec.name!r} ({spec.type}): only multiple_choice, schema and "
            "language_modeling tasks are written as lm-eval tasks."
        )
    return config


def write_lm_eval_tasks(
    tasks: list[TaskData], folder: str | Path, shots: list[int] | None = None
) -> list[str]:
    """Write one YAML per task (per shot count, when `shots` is given) into `folder`; returns
    the lm-eval task names."""
    folder = Path(folder)
    names = []
    for task, count in [(t, c) for t in tasks for c in (shots or [None])]:
        config = lm_eval_config(task, count)
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
        atomic_write(folder / f"{config['task']}.yaml", lambda f, t=text: f.write(t), mode="w")
        names.append(config["task"])
    return names
