"""Tessera's harness equals lm-evaluation-harness (0.4.x, `hf` model on `tessera export hf`'s
folder) on the same JSONL data: per-task accuracy within 0.5 points, per-example
log-likelihoods within 1e-3, on five tasks, 0-shot and 5-shot."""

from __future__ import annotations

from pathlib import Path

import pytest

from tessera.eval.harness import evaluate_task
from tessera.eval.lm_eval_tasks import write_lm_eval_tasks
from tessera.eval.models import load_model
from tessera.eval.tasks import TaskData, load_task

TASKS = ["lambada_openai", "piqa", "arc_easy", "winogrande", "copa"]
SHOTS = [0, 5]
LIMIT = 16


@pytest.fixture(scope="module")
def lm_eval_output(hf_folder: Path, tmp_path_factory: pytest.TempPathFactory):
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    folder = tmp_path_factory.mktemp("lm-eval-tasks")
    tasks = [TaskData.load(load_task(name)) for name in TASKS]
    names = write_lm_eval_tasks(tasks, folder, SHOTS)
    with pytest.MonkeyPatch.context() as patch:  # no hub: local files, a private cache
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
        patch.setenv("TOKENIZERS_PARALLELISM", "false")
        yield lm_eval.simple_evaluate(
            model="hf",
            model_args=f"pretrained={hf_folder},dtype=float32",
            tasks=names,
            batch_size=16,
            limit=LIMIT,
            device="cpu",
            log_samples=True,
            task_manager=TaskManager(include_path=str(folder), include_defaults=False),
        )


@pytest.mark.parametrize("shots", SHOTS)
@pytest.mark.parametrize("name", TASKS)
def test_tessera_equals_lm_eval(name: str, shots: int, trained_run: Path, lm_eval_output):
    model = load_model(str(trained_run), device="cpu")
    result = evaluate_task(model, TaskData.load(load_task(name)), shots, batch_size=7, limit=LIMIT)
    key = f"tessera_{name}_{shots}shot"
    theirs = lm_eval_output["results"][key]
    for metric, value in result.metrics.items():
        if metric == "perplexity":
            assert value == pytest.approx(theirs["perplexity,none"], rel=1e-3)
        else:
            assert abs(value - theirs[f"{metric},none"]) <= 0.005, (metric, value, theirs)
    samples = {sample["doc_id"]: sample for sample in lm_eval_output["samples"][key]}
    assert len(samples) == len(result.outcomes) == LIMIT
    for index, outcome in enumerate(result.outcomes):
        ours = outcome.get("loglikelihoods") or [outcome["loglikelihood"]]
        reference = [float(response[0][0]) for response in samples[index]["resps"]]
        assert len(ours) == len(reference)
        assert max(abs(a - b) for a, b in zip(ours, reference)) < 1e-3, (index, ours, reference)
    if shots == 5:  # the prompt text itself is lm-eval's, few-shot examples included
        context = samples[0]["arguments"][0][0] if name != "winogrande" else None
        if context is not None:
            assert context.count("\n\n") >= 5
