"""The GPU benchmark scripts of issue 16 run end to end on the CPU at tiny shapes (--smoke)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_script(monkeypatch: pytest.MonkeyPatch):
    """Runs a benchmark script as `__main__` in this process (torch is imported once)."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # the scripts put src/ and benchmarks/ first

    def run(script: str, *args: str) -> None:
        path = ROOT / "benchmarks" / script
        monkeypatch.setattr(sys, "argv", [str(path), "--smoke", *args])
        runpy.run_path(str(path), run_name="__main__")

    return run


@pytest.mark.slow
def test_mfu_long_and_fp8_benchmarks_smoke(tmp_path: Path, shared_data: Path, run_script) -> None:
    run_script(
        "gpu_llm_mfu.py",
        "--variants",
        "base,fused-ce+selective",
        "--fp8",
        "base",
        "--no-generation",
        "--out",
        str(tmp_path),
    )
    rows = json.loads((tmp_path / "mfu.json").read_text())["training"]
    # transformers right after the first run; base+fp8 is skipped on a CPU (said in the log)
    assert [(r["library"], r["variant"]) for r in rows] == [
        ("tessera", "base"),
        ("transformers", "base"),
        ("tessera", "fused-ce+selective"),
    ]
    assert rows[0]["params"] == rows[1]["params"]  # the same shape on both sides
    assert all(r["tokens_per_s"] > 0 for r in rows)
    assert "| tessera | smoke | fused-ce+selective |" in (tmp_path / "mfu.md").read_text()
    run_script("gpu_llm_long.py", "--runs", "128:selective,96:full", "--out", str(tmp_path))
    rows = json.loads((tmp_path / "long.json").read_text())["rows"]
    assert [(r["seq"], r["checkpointing"]) for r in rows] == [(128, "selective"), (96, "full")]
    assert all(r["tokens_per_s"] > 0 for r in rows)
    text = shared_data / "tinyshakespeare" / "input.txt"
    run_script("gpu_llm_fp8_loss.py", "--text", str(text), "--out", str(tmp_path))
    runs = json.loads((tmp_path / "fp8_loss.json").read_text())["runs"]
    assert runs[0]["method"] == "bf16" and "skipped" in runs[1]  # no FP8 tensor cores on a CPU
    assert 4.0 < runs[0]["final_loss"] < 6.5  # a real loss: ln(320) = 5.77 at random


@pytest.mark.slow
def test_finetune_benchmark_smoke(tmp_path: Path, run_script) -> None:
    pytest.importorskip("transformers")
    run_script("gpu_llm_finetune.py", "--no-hf", "--out", str(tmp_path))
    rows = json.loads((tmp_path / "finetune.json").read_text())["rows"]
    assert [(r["library"], r["method"]) for r in rows] == [("tessera", "full"), ("tessera", "lora")]
    assert rows[1]["trained_params"] < rows[0]["trained_params"] / 2
    assert "| tessera | lora |" in (tmp_path / "finetune.md").read_text()
