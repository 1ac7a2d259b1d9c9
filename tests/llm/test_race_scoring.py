"""The language-model race's one evaluator: a nanoGPT checkpoint, converted, scores exactly what
nanoGPT's own code computes; the whole validation split is scored once; the race runs end to
end in its smoke mode."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
PEER = REPO / ".peers" / "nanoGPT"  # the benchmark's peer, ignored by git (not in CI)
SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
sys.path.insert(0, str(REPO / "benchmarks"))

needs_peer = pytest.mark.skipif(
    not (PEER / "model.py").is_file(), reason=f"nanoGPT (the race's peer) not at {PEER}"
)

from lm_scoring import (  # noqa: E402
    load_nanogpt,
    nanogpt_reference_loss,
    score,
    validation_text,
    windows,
)

MAKE_CHECKPOINT = """
import sys, torch
from model import GPT, GPTConfig
torch.manual_seed(0)
args = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, bias=False, vocab_size=65, dropout=0.0)
model = GPT(GPTConfig(**args))
with torch.no_grad():
    for p in model.parameters():
        p.add_(0.05 * torch.randn_like(p))  # not the initial weights: LayerNorms too
torch.save({"model": model.state_dict(), "model_args": args, "iter_num": 7,
            "best_val_loss": 4.0, "config": {"batch_size": 12}}, sys.argv[1])
"""


@pytest.fixture(scope="module")
def nanogpt_checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    peer = tmp_path_factory.mktemp("peer") / "nanoGPT"
    shutil.copytree(PEER, peer)
    checkpoint = peer.parent / "ckpt.pt"
    env = {"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run(
        [sys.executable, "-c", MAKE_CHECKPOINT, str(checkpoint)],
        cwd=peer,
        check=True,
        env=env,
        timeout=300,
        capture_output=True,
    )
    return peer, checkpoint


@needs_peer
def test_a_converted_nanogpt_checkpoint_scores_what_nanogpt_computes(nanogpt_checkpoint):
    peer, checkpoint = nanogpt_checkpoint
    text = SHAKESPEARE.read_text(encoding="utf-8")
    check = nanogpt_reference_loss(peer, checkpoint, text)
    assert check["nanogpt_code"] == pytest.approx(check["tessera_code"], abs=1e-5)
    assert 3.0 < check["nanogpt_code"] < 6.0  # a perturbed, untrained model
    model, iteration = load_nanogpt(checkpoint, text)
    assert iteration == 7 and model.config.max_seq_len == 16 and model.config.tie_embeddings
    scored = score(model, text, limit=1000)
    assert scored["tokens"] == 1000
    assert scored["bits_per_char"] == pytest.approx(
        scored["val_loss"] / 0.6931471805599453, abs=1e-4
    )


def test_the_validation_split_is_the_last_tenth_and_each_target_is_scored_once():
    text = SHAKESPEARE.read_text(encoding="utf-8")
    val = validation_text(text)
    assert len(val) == len(text) - int(len(text) * 0.9) and text.endswith(val)
    ids = torch.arange(103)
    pieces = windows(ids, 16)
    targets = torch.cat([p[1:] for p in pieces])
    assert torch.equal(targets, ids[1:])
    assert all(len(p) == 17 for p in pieces[:-1]) and len(pieces[-1]) == 103 - 96


@needs_peer
@pytest.mark.slow
@pytest.mark.parametrize("mode", [[], ["--one-at-a-time"]], ids=["at-once", "one-at-a-time"])
def test_the_race_runs_end_to_end_in_smoke_mode(tmp_path: Path, mode: list[str]):
    out = tmp_path / "race"
    command = [sys.executable, str(REPO / "benchmarks" / "llm_shakespeare_race.py"), "cpu"]
    command += ["--nanogpt", str(PEER), "--text", str(SHAKESPEARE), "--out", str(out), "--smoke"]
    command += mode
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    race = json.loads((out / "race.json").read_text())
    check = race["nanogpt_conversion_check"]
    assert check["nanogpt_code"] == pytest.approx(check["tessera_code"], abs=1e-5)
    for name in ("nanogpt-0", "tessera-0"):
        points = race["runs"][name]["points"]
        assert len(points) == 2 and all(3.0 < p["val_loss"] < 4.5 for p in points)
        assert points[0]["seconds"] < points[1]["seconds"]
    assert "| side | level |" in (out / "race.md").read_text()


def test_a_run_that_never_reaches_the_level_counts_as_the_slowest(tmp_path: Path):
    from llm_shakespeare_race import censored_median, resummarise

    assert censored_median([90.9, None, 56.6]) == 90.9
    assert censored_median([3.0, 1.0, 2.0, None]) == 2.5
    assert censored_median([1.0, None, None]) is None
    assert censored_median([1.0, 2.0, None, None]) is None
    race = {
        "levels": {"reported": 1.47},
        "sides": {
            "nanogpt": {"reported": {"seconds": [90.0, None, 60.0]}},
            "tessera": {"reported": {"seconds": [30.0, 20.0, 25.0]}},
        },
    }
    for row in race["sides"].values():
        row.update(final_val_loss=[1.4], eval_share=[0.1], seconds_to_first_step=[2.0])
    race.update(machine="gpu", text="input.txt", recipe="r.yaml", repeats=3)
    path = tmp_path / "race.json"
    path.write_text(json.dumps(race))
    result = resummarise(path)
    assert result["sides"]["nanogpt"]["reported"]["median"] == 90.0
    assert result["sides"]["tessera"]["reported"]["ratio_vs_nanogpt"] == 3.6
    assert (
        "| tessera | reported 1.47 | 25.0 | 20.0-30.0 | 3/3 | 3.6 |"
        in (tmp_path / "race.md").read_text()
    )
