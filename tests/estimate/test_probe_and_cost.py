"""--probe trains real steps through the trainer; the cost monitor shows and writes dollars."""

from __future__ import annotations

import json

import pytest
from estimate_support import RECIPES, tessera, tiny_char_overrides

from tessera.loggers.jsonl import read_jsonl


def test_probe_measures_steps_through_the_real_trainer(shakespeare, tmp_path, capsys):
    out = tmp_path / "probe.json"
    overrides = tiny_char_overrides(shakespeare, tmp_path / "runs")
    assert (
        tessera(
            "estimate",
            RECIPES / "shakespeare-char.yaml",
            *overrides,
            "--probe",
            "3",
            "--price",
            "1",
            "--json",
            out,
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "probe on cpu: 3 steps timed" in text and "start-up" in text
    data = json.loads(out.read_text())
    probe = data["probe"]
    assert probe["steps"] == 3 and probe["step_seconds"] > 0
    assert probe["startup_seconds"] > 0 and probe["first_step_seconds"] > 0
    assert probe["eval_seconds"] is not None and probe["checkpoint_seconds"] is not None
    assert data["mode"] == "probe" and data["step_seconds"] == probe["step_seconds"]
    assert data["seconds"]["training steps"] == pytest.approx(6 * probe["step_seconds"])
    # Two evaluations: the first (compilation included) as measured, the second at warm cost.
    assert probe["first_eval_seconds"] is not None
    first, warm = probe["first_eval_seconds"], probe["eval_seconds"]
    assert data["seconds"]["evaluation"] == pytest.approx(first + warm)
    # The probe writes only into a temporary folder, never the recipe's run folder.
    assert not (tmp_path / "runs").exists()


def test_probe_refuses_another_gpu_than_this_machines(shakespeare, tmp_path, capsys):
    overrides = tiny_char_overrides(shakespeare, tmp_path)
    assert (
        tessera(
            "estimate",
            RECIPES / "shakespeare-char.yaml",
            *overrides,
            "--probe",
            "2",
            "--gpu",
            "h100",
        )
        == 2
    )
    assert "--probe measures this machine" in capsys.readouterr().err


def test_cost_json_and_live_dollars(char_run, capsys):
    cost = json.loads((char_run / "cost.json").read_text())
    assert cost["price_per_gpu_hour"] == 3.6 and cost["gpus"] == 1 and cost["batches"] == 6
    assert cost["finished"] is True
    assert cost["dollars"] == pytest.approx(cost["wall_seconds"] * 3.6 / 3600, rel=1e-3)
    records = [r for r in read_jsonl(char_run / "metrics.jsonl") if "cost/dollars" in r]
    assert records and records[-1]["cost/dollars"] <= cost["dollars"] + 1e-9
    assert [r["cost/dollars"] for r in records] == sorted(r["cost/dollars"] for r in records)


def test_progress_lines_show_dollars_beside_the_eta(shakespeare, tmp_path, capsys):
    overrides = tiny_char_overrides(shakespeare, tmp_path, name="live")
    assert tessera("train", RECIPES / "shakespeare-char.yaml", *overrides, "--price", "7200") == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "eta" in line]
    assert lines and all("$" in line.split("eta", 1)[1] for line in lines)
    assert " of ~$" in lines[-1]


def test_negative_price_is_refused(shakespeare, tmp_path, capsys):
    overrides = tiny_char_overrides(shakespeare, tmp_path)
    assert tessera("train", RECIPES / "shakespeare-char.yaml", *overrides, "--price", "-2") == 2
    assert "--price: '-2' is not accepted: must be at least 0" in capsys.readouterr().err
