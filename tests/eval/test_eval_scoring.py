"""Scoring: batching and padding change nothing, truncation is counted, the gauntlet math."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tessera.eval import scoring
from tessera.eval.gauntlet import load_gauntlet, score_gauntlet
from tessera.eval.harness import TaskResult, evaluate_task
from tessera.eval.models import load_model
from tessera.eval.tasks import TaskData, TaskSpec, load_task


def reference_loglikelihood(model, context: list[int], continuation: list[int]) -> float:
    """Sum of log p(continuation | context) from one unpadded forward pass over full logits."""
    ids = (context + continuation)[-(model.max_length + 1) :]
    with torch.no_grad():
        logits = model.model.run(torch.tensor([ids[:-1]]))[0]
    logprobs = F.log_softmax(logits.float(), -1)[-len(continuation) :]
    return float(logprobs.gather(1, torch.tensor(continuation).unsqueeze(1)).sum())


def test_batched_scores_equal_one_at_a_time(trained_run: Path) -> None:
    model = load_model(str(trained_run), device="cpu")
    pairs = [
        ("The cat sat on the", " mat"),
        ("Once", " upon a time"),
        ("A", " b"),
        ("x" * 500, " end"),
        ("Question: why?\n", "Answer: because"),
    ]
    encoded = scoring.encode_pairs(model, pairs)
    assert encoded[4][1][0] == ord("\n")  # trailing whitespace moved into the continuation
    single = scoring.score_pairs(model, encoded, batch_size=1)
    batched = scoring.score_pairs(model, encoded, batch_size=4)
    assert single.truncated.tolist() == [False, False, False, True, False]
    for i, (context, continuation) in enumerate(encoded):
        expected = reference_loglikelihood(model, context, continuation)
        assert batched.loglikelihood[i] == pytest.approx(expected, abs=1e-4)
        assert single.loglikelihood[i] == pytest.approx(expected, abs=1e-4)
    assert batched.greedy.tolist() == single.greedy.tolist()
    assert batched.tokens.tolist() == [len(c) for _, c in encoded]


def test_shared_contexts_score_as_separate_rows(trained_run: Path) -> None:
    """Choices over one context, computed once through the KV cache, equal full passes."""
    model = load_model(str(trained_run), device="cpu")
    assert model.shares_contexts
    pairs = []
    for context in ("Question: what is water?\nAnswer:", "Hi", "z" * 300, "The end of the"):
        pairs += [(context, " " + choice) for choice in ("wet", "a liquid at room heat", "x")]
    pairs += [("Alone", " once"), ("y" * 384, "a"), ("y" * 384, "b")]  # 384 + 1 = window + 1
    encoded = scoring.encode_pairs(model, pairs)
    shared = scoring.score_pairs(model, encoded, batch_size=5)
    model.shares_contexts = False
    rows = scoring.score_pairs(model, encoded, batch_size=5)
    for i, (context, continuation) in enumerate(encoded):
        expected = reference_loglikelihood(model, context, continuation)
        assert shared.loglikelihood[i] == pytest.approx(expected, abs=1e-4)
        assert rows.loglikelihood[i] == pytest.approx(expected, abs=1e-4)
    assert shared.greedy.tolist() == rows.greedy.tolist()


def test_single_token_choices_of_a_shared_context_score_alone(trained_run: Path) -> None:
    """A batch whose every continuation is one token has no positions past the context."""
    model = load_model(str(trained_run), device="cpu")
    encoded = scoring.encode_pairs(model, [("Q:", "a"), ("Q:", "b"), ("Q:", "c")])
    assert all(len(continuation) == 1 for _, continuation in encoded)
    scores = scoring.score_pairs(model, encoded, batch_size=4)
    for i, (context, continuation) in enumerate(encoded):
        expected = reference_loglikelihood(model, context, continuation)
        assert scores.loglikelihood[i] == pytest.approx(expected, abs=1e-4)


def test_truncation_is_counted_and_perplexity_covers_every_token(trained_run: Path, tmp_path):
    model = load_model(str(trained_run), device="cpu")
    lambada = TaskData.load(load_task("lambada_openai"))
    result = evaluate_task(model, lambada, 5, batch_size=8, limit=4)
    assert result.truncated == 4  # five shots of lambada never fit a 384-byte window
    assert evaluate_task(model, lambada, 0, batch_size=8, limit=4).truncated < 4
    text = "To be, or not to be, that is the question. " * 20
    windows = scoring.rolling_pairs(model, text)
    assert sum(len(c) for _, c in windows) == len(text.encode())
    assert all(len(c) == 1 and len(k) <= model.max_length for c, k in windows)
    scores = scoring.score_pairs(model, windows, batch_size=3)
    direct = sum(reference_loglikelihood(model, c, k) for c, k in windows)
    assert float(scores.loglikelihood.sum()) == pytest.approx(direct, abs=1e-3)


def result(task: str, shots: int, value: float, baseline: float) -> TaskResult:
    return TaskResult(task, shots, {"acc": value}, "acc", 10, 0, 1.0, baseline)


def test_gauntlet_rescales_above_random_and_averages(tmp_path: Path) -> None:
    gauntlet = load_gauntlet()
    assert len(gauntlet.categories) == 5
    results = [
        result("piqa", 5, 0.75, 0.5),
        result("copa", 0, 0.5, 0.5),
        result("arc_easy", 5, 0.25, 0.25),
        result("lambada_openai", 0, 0.3, 0.0),
    ]
    scored = score_gauntlet(gauntlet, results)
    commonsense = scored["categories"]["commonsense_reasoning"]
    assert commonsense["tasks"] == {"piqa/5-shot": 0.5, "copa/0-shot": 0.0}
    assert commonsense["score"] == 0.25
    assert scored["categories"]["world_knowledge"]["score"] == 0.0
    assert scored["categories"]["language_understanding"]["score"] == pytest.approx(0.3)
    assert scored["average"] == pytest.approx((0.25 + 0.0 + 0.3) / 3)
    copy = tmp_path / "mine.yaml"
    copy.write_text(
        "categories:\n  mine:\n    - {task: piqa, num_fewshot: 5, random_baseline: 0.6}\n"
    )
    mine = score_gauntlet(load_gauntlet(copy), results)
    assert mine["average"] == pytest.approx((0.75 - 0.6) / 0.4)
    assert not math.isnan(mine["average"])


def test_perplexity_task_over_a_text_file(trained_run: Path, tmp_path: Path) -> None:
    texts = ["To be, or not to be: that is the question. " * 12, "Brevity is the soul of wit."]
    (tmp_path / "texts.jsonl").write_text("\n".join(json.dumps({"body": t}) for t in texts))
    (tmp_path / "ppl.yaml").write_text(
        f"name: ppl\ntype: perplexity\ndata: texts.jsonl\ndata_dir: {tmp_path}\n"
        "fields: {text: body}\n"
    )
    model = load_model(str(trained_run), device="cpu")
    result = evaluate_task(model, TaskData.load(load_task(str(tmp_path / "ppl.yaml"))), 0, 4)
    nll = -sum(
        reference_loglikelihood(model, c, k)
        for t in texts
        for c, k in scoring.rolling_pairs(model, t)
    )
    tokens = sum(len(t.encode()) for t in texts)  # bytes: one token each, all predicted
    assert result.metrics["perplexity"] == pytest.approx(math.exp(nll / tokens), rel=1e-4)
    assert result.metrics["bits_per_byte"] == pytest.approx(nll / tokens / math.log(2), rel=1e-4)
    (tmp_path / "plain.txt").write_text(texts[0])
    plain = TaskSpec(name="plain", type="perplexity", data=str(tmp_path / "plain.txt"))
    alone = evaluate_task(model, TaskData.load(plain), 0, 4)
    assert alone.examples == 1 and alone.metrics["perplexity"] > 1
