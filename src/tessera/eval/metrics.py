"""Per-example outcomes and their aggregates, per task type (lm-evaluation-harness's rules).

multiple choice: `acc` picks the highest summed log-likelihood, `acc_norm` the highest per
character of the choice; schema: `acc` over the options; language modeling: `acc` when greedy
decoding reproduces the continuation token for token, `perplexity` = exp(-mean summed
log-likelihood); generation: `exact_match` of the extracted answer; perplexity: per token, and
bits per byte of the text.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

_NUMBER = re.compile(r"-?[\d,]*\.?\d+")


def choice_outcome(lls: list[float], gold: int, lengths: list[int] | None) -> dict[str, Any]:
    """One multiple-choice or schema example: its log-likelihoods and whether it was right."""
    values = np.asarray(lls, dtype=np.float64)
    pred = int(np.argmax(values))
    outcome: dict[str, Any] = {"loglikelihoods": [float(v) for v in values], "pred": pred}
    outcome["acc"] = float(pred == gold)
    if lengths:
        pred_norm = int(np.argmax(values / np.asarray(lengths, dtype=np.float64)))
        outcome["acc_norm"] = float(pred_norm == gold)
    return outcome


def extract_answer(text: str, pattern: str | None) -> str:
    """The answer in a generation: `pattern`'s first group, else the last number, else ''."""
    if pattern:
        found = re.search(pattern, text)
        if found:
            return found.group(1)
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else ""


def normalize_answer(answer: str) -> str:
    cleaned = answer.strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        value = float(cleaned)
    except ValueError:
        return cleaned
    return str(int(value)) if value.is_integer() else str(value)


def generation_outcome(text: str, gold: str, pattern: str | None) -> dict[str, Any]:
    answer = extract_answer(text, pattern)
    right = normalize_answer(answer) == normalize_answer(gold) and answer != ""
    return {"output": text, "answer": answer, "exact_match": float(right)}


def aggregate(task_type: str, outcomes: list[dict[str, Any]]) -> dict[str, float]:
    """The task's metrics over all its examples."""
    if task_type == "perplexity":
        nll = sum(o["nll"] for o in outcomes)
        tokens = sum(o["tokens"] for o in outcomes)
        size = sum(o["bytes"] for o in outcomes)
        return {"perplexity": math.exp(nll / tokens), "bits_per_byte": nll / size / math.log(2)}
    names = {"multiple_choice": ("acc", "acc_norm"), "schema": ("acc",)}.get(task_type)
    if task_type == "language_modeling":
        mean_ll = sum(o["loglikelihood"] for o in outcomes) / len(outcomes)
        return {"acc": _mean(outcomes, "acc"), "perplexity": math.exp(-mean_ll)}
    if task_type == "generation":
        return {"exact_match": _mean(outcomes, "exact_match")}
    return {name: _mean(outcomes, name) for name in names or ()}


def _mean(outcomes: list[dict[str, Any]], key: str) -> float:
    return sum(o[key] for o in outcomes) / len(outcomes)
