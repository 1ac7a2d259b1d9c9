"""Readers (text by file, paragraph or line; JSONL plain, gzip and zstd; Parquet; folders and
globs) and bad input: undecodable bytes are skipped and reported with file and offset, and an
empty corpus, a missing JSONL field, an output folder holding a previous clean, or a threshold
out of range each end with a clear error and exit code 2."""

from __future__ import annotations

import gzip
import json

import pytest
import zstandard
from clean_support import output_records

from tessera.cli.main import main
from tessera.data.clean.planted import synthetic_documents

DOCS = synthetic_documents(8, seed=11)


def clean_cli(*args: str) -> int:
    return main(["data", "clean", *args, "--no-progress", "--dedup", "exact"])


def jsonl_bytes(texts: list[str]) -> bytes:
    return "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()


def test_formats_and_compression(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jsonl.gz").write_bytes(gzip.compress(jsonl_bytes(DOCS[:2])))
    (folder / "sub" / "b.jsonl.zst").write_bytes(zstandard.compress(jsonl_bytes(DOCS[2:4])))
    (folder / "c.txt").write_text(DOCS[4], encoding="utf-8")
    (folder / ".hidden.txt").write_text(DOCS[5], encoding="utf-8")
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.table({"text": DOCS[5:7], "id": [1, 2]}), folder / "d.parquet")
    assert clean_cli(str(folder), "--out", str(tmp_path / "out")) == 0
    texts = [r["text"] for r in output_records(tmp_path / "out")]
    assert texts == [DOCS[0], DOCS[1], DOCS[4], DOCS[5], DOCS[6], DOCS[2], DOCS[3]]


def test_text_units_and_globs(tmp_path):
    text = "\n\n".join(DOCS[:3])
    (tmp_path / "book.txt").write_text(text, encoding="utf-8")
    (tmp_path / "notes.md").write_text(DOCS[3], encoding="utf-8")  # not matched by the glob
    paragraphs = text.split("\n\n")
    for unit, expected in (("paragraph", paragraphs), ("line", paragraphs), ("file", [text])):
        out = tmp_path / unit
        code = main(
            [
                "data",
                "clean",
                str(tmp_path / "*.txt"),
                "--out",
                str(out),
                "--no-progress",
                "--text-unit",
                unit,
                "--quality",
                "none",
                "--dedup",
                "none",
            ]
        )
        assert code == 0
        assert [r["text"] for r in output_records(out)] == expected


def test_undecodable_bytes_are_skipped_and_reported(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    good = jsonl_bytes(DOCS[:1])
    bad = json.dumps({"text": DOCS[1]}).encode().replace(b" ", b" \xff\xfe ", 1)
    (folder / "a.jsonl").write_bytes(good + bad + b"\n")
    assert clean_cli(str(folder), "--out", str(tmp_path / "out")) == 0
    message = capsys.readouterr().out
    offset = len(good) + bad.index(b"\xff")
    assert (
        f"skipped 2 bytes that are not UTF-8 in 1 file(s), first in {folder / 'a.jsonl'} "
        f"at byte offset {offset}" in message
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["inputs"]["undecodable"] == [
        {"file": str(folder / "a.jsonl"), "bytes": 2, "offsets": [offset]}
    ]
    assert len(output_records(tmp_path / "out")) == 2


def test_empty_corpus(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.jsonl").write_text("\n\n")
    assert clean_cli(str(tmp_path / "in"), "--out", str(tmp_path / "out")) == 2
    assert "hold no documents" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing left that a later clean would trip on
    assert clean_cli(str(tmp_path / "missing"), "--out", str(tmp_path / "out")) == 2
    assert "does not exist" in capsys.readouterr().err


def test_missing_field_names_field_and_first_line(tmp_path, capsys):
    path = tmp_path / "a.jsonl"
    lines = [{"text": DOCS[0]}, {"text": DOCS[1]}, {"body": "x", "id": 3}, {"body": "y"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert clean_cli(str(path), "--out", str(tmp_path / "out")) == 2
    error = capsys.readouterr().err
    assert f"{path}:3: the first record that has no field 'text' (fields: body, id)" in error
    assert "--text-field" in error
    assert not (tmp_path / "out" / "provenance.json").exists()


def test_previous_clean_is_refused_unless_overwrite(tmp_path, capsys):
    path = tmp_path / "a.jsonl"
    path.write_bytes(jsonl_bytes(DOCS[:3]))
    out = str(tmp_path / "out")
    assert clean_cli(str(path), "--out", out) == 0
    assert clean_cli(str(path), "--out", out) == 2
    assert "holds a finished clean; pass --overwrite" in capsys.readouterr().err
    assert clean_cli(str(path), "--out", out, "--overwrite") == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert clean_cli(str(path), "--out", str(tmp_path / "other"), "--overwrite") == 2
    assert "not a clean's (notes.txt)" in capsys.readouterr().err
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--threshold", "1.5"], "--threshold: '1.5' is not accepted: must be less than 1"),
        (["--set", "near.num_perm=2"], "near.num_perm: 2 is not accepted"),
        (["--set", "quality.gopher_length.min_words=-3"], "quality.gopher_length.min_words"),
        (["--dedup", "exact,fuzzy"], "--dedup 'exact,fuzzy'"),
        (["--workers", "0"], "--workers: '0' is not accepted: must be at least 1"),
    ],
)
def test_bad_settings_exit_2(tmp_path, capsys, flags, message):
    path = tmp_path / "a.jsonl"
    path.write_bytes(jsonl_bytes(DOCS[:1]))
    code = main(["data", "clean", str(path), "--out", str(tmp_path / "out"), *flags])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
