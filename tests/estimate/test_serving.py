"""Serving cost from a benchmark JSON, from the table and from generation measured here."""

from __future__ import annotations

import json

import pytest
from estimate_support import tessera

from tessera.estimate import serving
from tessera.estimate.hardware import get_hardware


def test_benchmark_json_gives_dollars_per_million_and_break_even(char_run, tmp_path, capsys):
    bench = tmp_path / "bench.json"
    bench.write_text(
        json.dumps(
            {
                "results": [
                    {"concurrency": 1, "tokens_per_second": 100.0},
                    {"concurrency": 8, "tokens_per_second": 720.0},
                ]
            }
        )
    )
    out = tmp_path / "serve.json"
    assert (
        tessera(
            "estimate",
            "serve",
            char_run,
            "--price",
            "3.6",
            "--benchmark",
            bench,
            "--revenue-per-million",
            "20",
            "--json",
            out,
        )
        == 0
    )
    data = json.loads(out.read_text())
    training = json.loads((char_run / "cost.json").read_text())["dollars"]
    one = data["points"][0]
    assert one["dollars_per_million_tokens"] == pytest.approx(3.6 / (100 * 3600) * 1e6)  # $10
    assert one["tokens_costing_the_training"] == pytest.approx(training / 1e-5)
    assert one["tokens_to_pay_back_training"] == pytest.approx(training / (20e-6 - 10e-6))
    assert "break-even at concurrency 8" in capsys.readouterr().out


def test_table_serving_is_bound_by_the_launch_floor_for_small_models(char_run):
    model = serving.model_shape(char_run)
    points = serving.table_points(model, get_hardware("h100"), [1, 4])
    tensors = sum(1 for _ in model.parameters())
    assert points[0].tokens_per_second == pytest.approx(
        1 / (tensors * serving.DECODE_SECONDS_PER_TENSOR)
    )
    assert points[1].tokens_per_second == pytest.approx(4 * points[0].tokens_per_second)


def test_probe_generates_here(char_run, capsys):
    assert (
        tessera("estimate", "serve", char_run, "--price", "1", "--probe", "--concurrency", "1", "2")
        == 0
    )
    rows = [line for line in capsys.readouterr().out.splitlines() if "probe (cpu)" in line]
    assert len(rows) == 2


def test_bad_benchmark_and_price(char_run, tmp_path, capsys):
    bench = tmp_path / "bad.json"
    bench.write_text(json.dumps({"results": [{"batch": 1}]}))
    assert tessera("estimate", "serve", char_run, "--price", "1", "--benchmark", bench) == 2
    assert "tokens_per_second" in capsys.readouterr().err
    assert tessera("estimate", "serve", char_run, "--price", "-3") == 2
