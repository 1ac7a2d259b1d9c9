"""Provenance end to end: a clean's manifest carries its sources, steps, licence and tags;
tokenizing the clean chains it; a real `tessera train` run mixing two shard sets records
each with the samples and tokens it contributed, also across a resume; `tessera provenance`
prints it; data without a manifest is "unknown source"; the HF export's model card names the
data and licences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from clean_support import write_jsonl

from tessera.cli.main import main
from tessera.data.clean.planted import synthetic_documents

SEQ = 16
RECIPE = {
    "name": "mix",
    "seed": 3,
    "max_duration": "4ba",
    "eval_interval": "100ep",
    "save_interval": "2ba",
    "precision": "fp32",
    "device": "cpu",
    "model": {
        "name": "gpt",
        "tokenizer": "byte",
        "max_seq_len": SEQ,
        "n_layer": 1,
        "n_head": 2,
        "d_model": 16,
    },
    "data": {"name": "text", "batch_size": 8},
    "optimizer": {"name": "adamw", "lr": 1.0e-3},
    "callbacks": {"provenance": {}},
    "loggers": {},
}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """A: raw JSONL -> clean (licence, tag) -> shards. B: raw JSONL -> shards (licence)."""
    root = tmp_path_factory.mktemp("provenance")
    write_jsonl(root / "raw_a", synthetic_documents(30, seed=41), files=2)
    write_jsonl(root / "raw_b", synthetic_documents(10, seed=42), files=1)
    assert (
        main(
            [
                "data",
                "clean",
                str(root / "raw_a"),
                "--out",
                str(root / "clean_a"),
                "--license",
                "CC-BY-4.0",
                "--tag",
                "pii-redacted",
                "--pii",
                "redact",
                "--no-progress",
            ]
        )
        == 0
    )
    tokenize = ["--tokenizer", "byte", "--seq-len", str(SEQ), "--format", "shards"]
    assert (
        main(["data", "tokenize", str(root / "clean_a"), "--out", str(root / "a"), *tokenize]) == 0
    )
    assert (
        main(
            [
                "data",
                "tokenize",
                str(root / "raw_b" / "00.jsonl"),
                "--out",
                str(root / "b"),
                "--license",
                "CC0-1.0",
                *tokenize,
            ]
        )
        == 0
    )
    return root


def test_manifests_chain_back_to_the_raw_files(datasets):
    clean = json.loads((datasets / "clean_a" / "provenance.json").read_text())
    assert clean["kind"] == "clean" and clean["license"] == "CC-BY-4.0"
    assert clean["tags"] == ["pii-redacted"]
    assert [s["path"] for s in clean["sources"]] == [
        str(datasets / "raw_a" / "00.jsonl"),
        str(datasets / "raw_a" / "01.jsonl"),
    ]
    for source in clean["sources"]:
        assert source["bytes"] == Path(source["path"]).stat().st_size
    names = [step["name"] for step in clean["steps"]]
    assert names == ["read", "exact_dedup", "quality_filters", "near_dedup", "pii", "write"]
    assert clean["steps"][0]["counts"]["documents"] == 30
    shards = json.loads((datasets / "a" / "provenance.json").read_text())
    assert shards["kind"] == "shards" and shards["license"] == "CC-BY-4.0"  # carried forward
    assert shards["tags"] == ["pii-redacted"]
    assert shards["sources"][0]["manifest"] == clean
    tokenize = shards["steps"][0]
    assert tokenize["name"] == "tokenize" and tokenize["settings"]["seq_len"] == SEQ
    assert tokenize["counts"]["train_sequences"] > 0
    assert {f["path"] for f in shards["files"]} == {
        "tokenizer.json",
        "train/index.json",
        "val/index.json",
    }


def _train(datasets: Path, tmp_path: Path, *overrides: str) -> int:
    recipe = dict(RECIPE)
    recipe["data"] = {
        **recipe["data"],
        "shards": [
            {"path": str(datasets / "a"), "choose": 48},
            {"path": str(datasets / "b"), "choose": 16},
        ],
    }
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return main(["train", str(path), f"run_dir={tmp_path / 'runs'}", *overrides])


def test_training_on_a_mix_records_each_data_set_across_a_resume(datasets, tmp_path, capsys):
    assert _train(datasets, tmp_path) == 0  # 4 of the epoch's 8 batches
    run = tmp_path / "runs" / "mix"
    first = json.loads((run / "final" / "provenance.json").read_text())
    assert first["totals"] == {"samples": 32, "tokens": 32 * SEQ, "batches": 4}
    assert _train(datasets, tmp_path, "max_duration=1ep") == 0  # resumes at batch 4
    record = json.loads((run / "final" / "provenance.json").read_text())
    by_path = {Path(s["path"]).parent.name: s for s in record["sources"]}
    assert by_path["a"]["samples"] == 48 and by_path["a"]["tokens"] == 48 * SEQ
    assert by_path["b"]["samples"] == 16 and by_path["b"]["tokens"] == 16 * SEQ
    assert record["totals"] == {"samples": 64, "tokens": 64 * SEQ, "batches": 8}
    assert by_path["a"]["manifest"]["license"] == "CC-BY-4.0"
    assert by_path["b"]["manifest"]["license"] == "CC0-1.0"
    assert record["licenses"] == ["CC-BY-4.0", "CC0-1.0"]

    capsys.readouterr()
    assert main(["provenance", str(run)]) == 0
    shown = capsys.readouterr().out
    assert "run mix: 64 samples, 1,024 tokens in 8 batches" in shown
    assert f"- {datasets / 'a' / 'train'}: 48 samples, 768 tokens" in shown
    assert f"source {datasets / 'raw_a' / '00.jsonl'}" in shown  # the chain to the raw files
    assert "step near_dedup" in shown

    pytest.importorskip("transformers")
    out = tmp_path / "hf"
    assert main(["export", "hf", str(run), str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "license:" not in card.split("---")[1]  # two licences: none claimed for the model
    assert f"| `{datasets / 'a' / 'train'}` | CC-BY-4.0 | pii-redacted | 48 | 768 |" in card
    assert f"| `{datasets / 'b' / 'train'}` | CC0-1.0 |  | 16 | 256 |" in card
    assert json.loads((out / "provenance.json").read_text()) == record


def test_data_without_a_manifest_is_an_unknown_source(datasets, tmp_path, capsys):
    tokens = tmp_path / "tokens"
    text = tmp_path / "raw.txt"
    text.write_text("\n".join(synthetic_documents(5, seed=43)))
    from tessera.data.text import ByteTokenizer, read_documents, tokenize_to_folder

    tokenize_to_folder(read_documents([text]), ByteTokenizer(), tokens, seq_len=SEQ)  # no manifest
    recipe = {
        **RECIPE,
        "name": "plain",
        "max_duration": "2ba",
        "data": {"name": "text", "path": str(tokens), "batch_size": 4},
    }
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path), f"run_dir={tmp_path / 'runs'}"]) == 0
    record = json.loads((tmp_path / "runs" / "plain" / "final" / "provenance.json").read_text())
    (source,) = record["sources"]
    assert source["path"] == str(tokens) and source["manifest"] is None
    assert source["source"] == "unknown source"
    assert source["samples"] == 8 and source["tokens"] == 8 * SEQ
    capsys.readouterr()
    assert main(["provenance", str(tmp_path / "runs" / "plain")]) == 0
    assert "unknown source (no provenance manifest)" in capsys.readouterr().out


def test_convert_writes_a_manifest_naming_its_shards(tmp_path):
    import xxhash

    source = write_jsonl(tmp_path / "raw", synthetic_documents(4, seed=44), files=1) / "00.jsonl"
    out = tmp_path / "shards"
    assert (
        main(
            [
                "data",
                "convert",
                "jsonl",
                str(source),
                str(out),
                "--license",
                "MIT",
                "--tag",
                "synthetic",
            ]
        )
        == 0
    )
    manifest = json.loads((out / "provenance.json").read_text())
    assert manifest["kind"] == "shards" and manifest["license"] == "MIT"
    assert manifest["tags"] == ["synthetic"]
    assert manifest["sources"][0]["path"] == str(source)
    assert manifest["sources"][0]["bytes"] == source.stat().st_size
    assert manifest["steps"][0]["counts"] == {"samples": 4, "shards": len(manifest["files"])}
    for entry in manifest["files"]:
        data = (out / entry["path"]).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["hash"] == "xxh3-64:" + xxhash.xxh3_64_hexdigest(data)
