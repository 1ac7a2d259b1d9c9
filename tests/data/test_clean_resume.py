"""A clean killed mid-way (SIGKILL, while scanning and while writing) leaves an output folder
that does not look complete, and running the same command again finishes it with exactly the
output of a clean that was never interrupted (also when resumed with more workers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clean_support import part_bytes, write_jsonl

from tessera.cli.main import main
from tessera.data.clean.planted import plant, synthetic_documents

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    documents = plant(synthetic_documents(320, seed=21), seed=22).documents
    source = write_jsonl(folder / "in", documents, files=8)
    assert main(command(source, folder / "reference")[3:]) == 0  # never interrupted
    return source, folder / "reference"


def command(folder: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tessera.cli",
        "data",
        "clean",
        str(folder),
        "--out",
        str(out),
        "--no-progress",
        "--pii",
        "redact",
    ]


def run_until(folder: Path, out: Path, marker: Path) -> None:
    """Start a clean and kill it as soon as `marker` exists."""
    env = {**os.environ, "PYTHONPATH": SRC}
    process = subprocess.Popen(
        command(folder, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert process.poll() is None, process.stdout.read().decode()
        assert time.monotonic() < deadline, "the clean did not reach the kill point"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


@pytest.mark.parametrize("stage", ["scan", "write"])
def test_killed_clean_resumes_to_the_same_output(corpus, tmp_path, stage, capsys):
    corpus, reference = corpus
    out = tmp_path / "out"
    work = out / ".clean"
    marker = (
        work / "scan" / "00000.summary.json" if stage == "scan" else work / "parts" / "00000.json"
    )
    run_until(corpus, out, marker)
    assert not (out / "provenance.json").exists()  # never looks complete
    scanned = len(list((work / "scan").glob("*.summary.json")))
    written = len(list((work / "parts").glob("*.json"))) if (work / "parts").exists() else 0
    assert (scanned < 8) if stage == "scan" else (written < 8)  # killed before the end
    capsys.readouterr()
    assert (
        main(
            [
                "data",
                "tokenize",
                str(out),
                "--tokenizer",
                "byte",
                "--seq-len",
                "8",
                "--out",
                str(tmp_path / "tokens"),
            ]
        )
        == 2
    )
    assert "is an unfinished clean" in capsys.readouterr().err

    assert main([*command(corpus, out)[3:], "--workers", "2"]) == 0  # any worker count
    said = capsys.readouterr().out
    assert f"resuming the clean in {out}: {scanned} of 8 files already scanned" in said
    assert part_bytes(out) == part_bytes(reference)
    assert (out / "provenance.json").exists() and not work.exists()
