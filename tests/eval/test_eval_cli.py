"""`tessera eval --tasks`: results files and tables, Hugging Face folders, the gauntlet, two
processes, and evaluation during training through the `icl_evaluation` callback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tessera.cli.main import main


def read_results(folder: Path) -> dict:
    return json.loads((folder / "icl_results.json").read_text())


def metrics_of(document: dict) -> dict:
    return {(r["task"], r["num_fewshot"]): r["metrics"] for r in document["results"]}


def test_eval_writes_json_and_markdown_to_the_run_folder(trained_run: Path, capsys) -> None:
    code = main(
        [
            "eval",
            str(trained_run),
            "--tasks",
            "piqa,lambada_openai_small",
            "--num-fewshot",
            "0,5",
            "--batch-size",
            "8",
            "--limit",
            "6",
            "--no-progress",
        ]
    )
    assert code == 0
    document = read_results(trained_run)
    assert sorted(metrics_of(document)) == [
        ("lambada_openai_small", 0),
        ("lambada_openai_small", 5),
        ("piqa", 0),
        ("piqa", 5),
    ]
    piqa = next(r for r in document["results"] if r["task"] == "piqa" and r["num_fewshot"] == 5)
    assert piqa["examples"] == 6 and piqa["truncated"] == 6 and piqa["examples_per_second"] > 0
    table = (trained_run / "icl_results.md").read_text()
    assert "| piqa | 5 | acc " in table and "| lambada_openai_small | 0 |" in table
    shown = capsys.readouterr().out
    assert "in-context-learning evaluation" in shown and "cut from the left" in shown


def test_hf_folder_scores_what_the_tessera_model_scores(
    trained_run: Path, hf_folder: Path, tmp_path: Path
) -> None:
    arguments = [
        "--tasks",
        "copa,winogrande",
        "--limit",
        "8",
        "--no-progress",
        "--num-fewshot",
        "0",
    ]
    assert main(["eval", "--hf", str(hf_folder), *arguments, "--out", str(tmp_path / "hf")]) == 0
    assert main(["eval", str(trained_run), *arguments, "--out", str(tmp_path / "ours")]) == 0
    hf, ours = read_results(tmp_path / "hf"), read_results(tmp_path / "ours")
    for key, values in metrics_of(ours).items():
        assert metrics_of(hf)[key] == pytest.approx(values, abs=1e-9)


def test_gauntlet_scores_every_category(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "gauntlet"
    assert (
        main(
            [
                "eval",
                str(trained_run),
                "--tasks",
                "gauntlet",
                "--limit",
                "2",
                "--batch-size",
                "16",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    document = read_results(out)
    gauntlet = document["gauntlet"]
    assert set(gauntlet["categories"]) == {
        "world_knowledge",
        "commonsense_reasoning",
        "language_understanding",
        "symbolic_problem_solving",
        "reading_comprehension",
    }
    means = [part["score"] for part in gauntlet["categories"].values()]
    assert gauntlet["average"] == pytest.approx(sum(means) / 5)
    gsm8k = next(r for r in document["results"] if r["task"] == "gsm8k")
    assert gsm8k["num_fewshot"] == 8 and "exact_match" in gsm8k["metrics"]
    assert "**average**" in (out / "icl_results.md").read_text()


@pytest.mark.timeout(300)
def test_two_processes_split_the_examples_and_agree(trained_run: Path, tmp_path: Path) -> None:
    arguments = [
        str(trained_run),
        "--tasks",
        "arc_easy",
        "--num-fewshot",
        "0",
        "--limit",
        "9",
        "--device",
        "cpu",
        "--no-progress",
    ]
    assert main(["eval", *arguments, "--out", str(tmp_path / "one")]) == 0
    assert main(["eval", *arguments, "--nproc", "2", "--out", str(tmp_path / "two")]) == 0
    one, two = read_results(tmp_path / "one"), read_results(tmp_path / "two")
    assert two["world_size"] == 2 and two["results"][0]["examples"] == 9
    assert metrics_of(two).keys() == metrics_of(one).keys()
    for key, values in metrics_of(one).items():
        assert metrics_of(two)[key] == pytest.approx(values, abs=1e-9)


def test_icl_evaluation_during_training_matches_offline_eval(tmp_path: Path, eval_dir) -> None:
    text = tmp_path / "corpus.txt"
    lines = (eval_dir / "lambada_openai.jsonl").read_text().splitlines()[:60]
    text.write_text("\n\n".join(json.loads(line)["context"] for line in lines))
    recipe = {
        "name": "icl",
        "run_dir": str(tmp_path / "runs"),
        "seed": 0,
        "max_duration": "12ba",
        "eval_interval": "12ba",
        "save_interval": "6ba",
        "keep_last": None,
        "precision": "fp32",
        "device": "cpu",
        "model": {
            "name": "gpt",
            "tokenizer": "byte",
            "max_seq_len": 128,
            "n_layer": 1,
            "n_head": 2,
            "d_model": 32,
        },
        "data": {
            "name": "text",
            "text": str(text),
            "tokenizer": "byte",
            "seq_len": 64,
            "batch_size": 8,
        },
        "optimizer": {"name": "adamw", "lr": 0.003},
        "callbacks": {
            "icl_evaluation": {
                "tasks": ["copa", "winogrande"],
                "interval": "6ba",
                "limit": 5,
                "num_fewshot": 0,
            }
        },
        "loggers": {"jsonl": {}},
    }
    path = tmp_path / "icl.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path)]) == 0
    run = tmp_path / "runs" / "icl"
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    icl = [row for row in logged if "metrics/icl/copa_0shot/acc" in row.get("metrics", row)]
    assert len(icl) == 2, logged[-3:]
    first = icl[0].get("metrics", icl[0])
    assert first["time/icl_eval_seconds"] > 0
    checkpoint = sorted((run / "checkpoints").glob("*ba6.pt"))[0]
    out = tmp_path / "offline"
    assert (
        main(
            [
                "eval",
                str(checkpoint),
                "--tasks",
                "copa,winogrande",
                "--num-fewshot",
                "0",
                "--limit",
                "5",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    offline = metrics_of(read_results(out))
    assert first["metrics/icl/copa_0shot/acc"] == offline[("copa", 0)]["acc"]
    assert first["metrics/icl/winogrande_0shot/acc"] == offline[("winogrande", 0)]["acc"]
