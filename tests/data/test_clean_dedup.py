"""Duplicate removal on a generated corpus with planted copies: exact copies (case, spacing,
punctuation changed) all go; near copies (word edits, reordered paragraphs, added boilerplate)
go with precision and recall of at least 0.95 at the default threshold, while unrelated pages
sharing a boilerplate template stay; workers give the same output as one process."""

from __future__ import annotations

import json

import pytest
from clean_support import kept_indices, part_bytes, write_jsonl

from tessera.data.clean import CleanConfig, clean
from tessera.data.clean.planted import plant, score, synthetic_documents

pytest.importorskip("datasketch")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    corpus = plant(synthetic_documents(400, seed=1), seed=2)
    folder = write_jsonl(tmp_path_factory.mktemp("planted") / "in", corpus.documents)
    return corpus, folder


def test_planted_duplicates_are_removed(planted, tmp_path):
    corpus, folder = planted
    report = clean([str(folder)], str(tmp_path / "out"), CleanConfig(workers=2), progress=False)
    result = score(corpus, kept_indices(tmp_path / "out"))
    assert result["exact_recall"] == 1.0
    assert result["near_recall"] >= 0.95, result
    assert result["precision"] >= 0.95, result
    kinds = set(corpus.kinds.values())
    assert {"edit", "reorder", "boilerplate", "exact"} <= kinds
    removed = report["removed"]
    assert (
        removed["exact_duplicate"]["documents"] + removed["near_duplicate"]["documents"]
        == (result["removed"])
    )
    assert report["output"]["documents"] == len(corpus.documents) - result["removed"]
    assert sum(report["dedup"]["near_clusters"].values()) >= 0.95 * len(corpus.near_groups)
    manifest = json.loads((tmp_path / "out" / "provenance.json").read_text())
    steps = {step["name"]: step for step in manifest["steps"]}
    assert steps["near_dedup"]["counts"]["removed"] == removed["near_duplicate"]["documents"]
    assert steps["near_dedup"]["settings"]["threshold"] == 0.7
    assert [s["path"] for s in manifest["sources"]] == [str(p) for p in sorted(folder.iterdir())]
    assert all(s["hash"].startswith("xxh3-128:") for s in manifest["sources"])
    sample = report["samples"]["near_duplicate"][0]
    assert "#" in sample["duplicate_of"] and sample["text"]


def test_one_worker_writes_the_same_output_as_two(planted, tmp_path):
    _, folder = planted
    clean([str(folder)], str(tmp_path / "one"), CleanConfig(workers=1), progress=False)
    clean([str(folder)], str(tmp_path / "two"), CleanConfig(workers=2), progress=False)
    assert part_bytes(tmp_path / "one") == part_bytes(tmp_path / "two")


def test_exact_only_keeps_near_copies(planted, tmp_path):
    corpus, folder = planted
    config = CleanConfig.model_validate({"dedup": {"near": False}})
    clean([str(folder)], str(tmp_path / "out"), config, progress=False)
    result = score(corpus, kept_indices(tmp_path / "out"))
    assert result["exact_recall"] == 1.0
    assert result["near_recall"] < 0.2  # only copies that normalise to the same text


def test_repeated_lines_are_removed_after_their_first_occurrence(tmp_path):
    documents = synthetic_documents(6, seed=4)
    banner = "Posted by the editorial team on Monday, with thanks to our readers"
    texts = [f"{banner}\n{text}\nok" for text in documents]
    folder = write_jsonl(tmp_path / "in", texts, files=2)
    settings = {"dedup": {"segments": "line"}, "quality": {"preset": "none"}}
    report = clean(
        [str(folder)], str(tmp_path / "out"), CleanConfig.model_validate(settings), progress=False
    )
    from clean_support import output_records

    texts_out = [r["text"] for r in output_records(tmp_path / "out")]
    assert sum(banner in t for t in texts_out) == 1  # kept in the first document only
    assert all(t.endswith("ok") for t in texts_out)  # short lines are never removed
    assert report["dedup"]["segments_removed"] == 5


def test_signatures_are_datasketch_minhashes():
    import datasketch
    import numpy as np

    from tessera.data.clean import Document
    from tessera.data.clean.config import NearConfig
    from tessera.data.clean.near import make_signer

    signer = make_signer(NearConfig())
    for text in [*synthetic_documents(5, seed=9), "one two three"]:
        document = Document(text)
        shingles = document.ngram_hashes(5)
        folded = ((shingles >> np.uint64(32)) ^ shingles).astype(np.uint32)
        reference = datasketch.MinHash(128, seed=1, hashfunc=int, scheme="affine32")
        reference.update_batch(folded.tolist())
        assert np.array_equal(signer.signature(document), reference.hashvalues)
