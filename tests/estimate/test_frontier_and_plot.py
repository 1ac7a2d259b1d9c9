"""The frontier of Fashion-MNIST runs trained here, and `tessera plot` of a run's curves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from estimate_support import RECIPES, tessera, tiny_vision_overrides

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def vision_runs(tmp_path_factory, fashion_mnist_dir) -> list[Path]:
    runs = tmp_path_factory.mktemp("vision-runs")
    shapes = [("narrow-1ep", 4, 1), ("narrow-2ep", 4, 2), ("wide-1ep", 8, 1)]
    for name, width, epochs in shapes:
        overrides = tiny_vision_overrides(fashion_mnist_dir, runs, name, width, epochs)
        recipe = RECIPES / "fashion-mnist-baseline.yaml"
        assert tessera("train", recipe, *overrides, "--price", "2") == 0
    return [runs / name for name, _, _ in shapes]


def test_frontier_table_png_and_pareto_marks(vision_runs, tmp_path, capsys):
    out, points_file = tmp_path / "frontier.png", tmp_path / "points.json"
    assert (
        tessera(
            "estimate",
            "frontier",
            *vision_runs,
            "--metric",
            "eval/accuracy",
            "--out",
            out,
            "--json",
            points_file,
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "| run | metrics/eval/accuracy |" in table and "narrow-2ep" in table
    assert out.read_bytes().startswith(PNG)
    points = json.loads(points_file.read_text())["points"]
    for p in points:  # recomputed: a point is on the frontier iff nothing dominates it
        dominated = any(
            q["dollars"] <= p["dollars"]
            and q["quality"] >= p["quality"]
            and (q["dollars"] < p["dollars"] or q["quality"] > p["quality"])
            for q in points
            if q is not p
        )
        assert p["on_frontier"] == (not dominated)
        cost = json.loads((Path(p["path"]) / "cost.json").read_text())
        assert p["dollars"] == cost["dollars"] and p["cost_source"] == "cost.json"
    cheapest = min(points, key=lambda p: p["dollars"])
    assert cheapest["on_frontier"]


def test_frontier_without_cost_uses_time_and_price(vision_runs, tmp_path, capsys):
    copy = tmp_path / "no-cost"
    copy.mkdir()
    (copy / "metrics.jsonl").write_bytes((vision_runs[0] / "metrics.jsonl").read_bytes())
    assert tessera("estimate", "frontier", copy, vision_runs[1], "--price", "3.6") == 0
    assert "no-cost" in capsys.readouterr().out


def test_frontier_bad_input_exits_2(vision_runs, tmp_path, capsys):
    assert tessera("estimate", "frontier") == 2
    assert "no runs given" in capsys.readouterr().err
    assert tessera("estimate", "frontier", tmp_path) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    assert tessera("estimate", "frontier", vision_runs[0], "--metric", "eval/acuracy") == 2
    assert "did you mean" in capsys.readouterr().err
    assert tessera("estimate", "frontier", vision_runs[0], "--price", "-1") == 2


def test_plot_writes_every_panel(vision_runs, char_run, tmp_path, capsys):
    out = tmp_path / "curves.png"
    assert tessera("plot", char_run, "--out", out) == 0
    said = capsys.readouterr().out
    assert out.read_bytes().startswith(PNG)
    for panel in ("training loss", "evaluation", "throughput", "learning rate"):
        assert panel in said
    assert tessera("plot", tmp_path, "--out", out) == 2
    assert tessera("plot", char_run, "--out", tmp_path / "curves.jpg") == 2
