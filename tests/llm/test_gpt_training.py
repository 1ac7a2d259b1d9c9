"""The shakespeare-char recipe trains through `tessera train` and generates with `tessera
generate`: a short CPU run must bring validation loss well under the unigram level."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tessera.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "shakespeare-char.yaml"


@pytest.mark.slow
def test_char_recipe_learns_and_generates(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    overrides = [
        f"run_dir={tmp_path}",
        "name=char",
        "max_duration=150ba",
        "eval_interval=150ba",
        "save_interval=null",
        "model.n_layer=2",
        "model.d_model=64",
        "model.n_head=4",
        "data.eval_max_sequences=256",
        "optimizer.lr=0.006",
        "loggers={}",
    ]
    assert main(["train", str(RECIPE), *overrides]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    results = summary["eval"]["eval"]
    # ln(65) = 4.17 untrained; a unigram model scores ~3.3 nats; 150 steps reach ~2.5.
    assert results["loss"] < 2.75, results
    assert results["bits_per_char"] == pytest.approx(results["loss"] / math.log(2))
    assert results["perplexity"] == pytest.approx(math.exp(results["loss"]), rel=1e-6)
    # `tessera eval` loads the run's final model (the tied head is stored once) and agrees.
    assert main(["eval", str(tmp_path / "char"), "data.eval_max_sequences=256"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["eval"]["eval"]["loss"] == pytest.approx(results["loss"], abs=1e-5)

    code = main(
        [
            "generate",
            str(tmp_path / "char"),
            "--prompt",
            "ROMEO:",
            "--max-new-tokens",
            "120",
            "--seed",
            "0",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert text.startswith("ROMEO:")
    generated = text.split("-" * 40)[0][len("ROMEO:") :]
    assert len(generated.strip()) > 60
    # Learned English-like spacing: words of plausible length, not a random character soup.
    words = generated.split()
    assert 2.0 < sum(map(len, words)) / len(words) < 8.0
