"""Start-up stays light: `import tessera` and `tessera --help` import no torch, a char-level
run imports nothing heavy it does not use, and tokenized text is cached, keyed by its input.

The checks name modules instead of timing them, so a loaded machine cannot make them fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
HEAVY = ("torchmetrics", "scipy", "transformers", "matplotlib", "pandas", "sklearn")


def imported_after(code: str, tmp_path: Path, full: bool = False) -> set[str]:
    """The top-level module names (every name with `full`) a fresh interpreter holds after
    running `code`."""
    names = "sys.modules" if full else "{m.split('.')[0] for m in sys.modules}"
    script = code + f"\nimport json, sys\nprint(json.dumps(sorted({names})))"
    env = {
        "PYTHONPATH": str(REPO / "src"),
        "TESSERA_HOME": str(tmp_path / "home"),
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_import_and_help_load_no_torch(tmp_path: Path) -> None:
    modules = imported_after(
        "import tessera, tessera.functional\n"
        "from tessera.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass",
        tmp_path,
    )
    assert "tessera" in modules
    assert not modules & {"torch", "numpy", "pydantic", *HEAVY}


def test_data_clean_imports_no_torch(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    sentence = "The quick brown fox jumps over the lazy dog near the river bank. "
    (corpus / "a.jsonl").write_text(json.dumps({"text": sentence * 40}) + "\n")
    out = tmp_path / "clean"
    modules = imported_after(
        "from tessera.cli.main import main\n"
        f"code = main(['data', 'clean', {str(corpus)!r}, '--out', {str(out)!r}, "
        "'--no-progress'])\n"
        "assert code in (0, None), code",
        tmp_path,
    )
    assert any(out.glob("part-*")), "the clean wrote no output"
    assert "xxhash" in modules
    assert "torch" not in modules


def test_a_char_level_run_imports_nothing_heavy_it_does_not_use(tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:20000], encoding="utf-8")
    overrides = [
        f"data.text={text}",
        f"data.tokenizer=char:{text}",
        f"model.tokenizer=char:{text}",
        "max_duration=2ba",
        "eval_interval=2ba",
        "data.eval_max_sequences=8",
        f"run_dir={tmp_path / 'runs'}",
    ]
    recipe = str(REPO / "recipes" / "shakespeare-char-fast.yaml")
    modules = imported_after(
        "from tessera.config import load_config\n"
        "from tessera.config.build import build_trainer\n"
        f"build_trainer(load_config({recipe!r}, {overrides!r})).fit()",
        tmp_path,
        full=True,
    )
    assert "torch" in modules
    assert not {name.split(".")[0] for name in modules} & set(HEAVY)
    assert "torch._dynamo" not in modules  # nothing is compiled: seconds of start-up saved


def test_tokenized_text_is_cached_by_the_hash_of_its_input(tmp_path: Path, monkeypatch) -> None:
    import tessera.data.text.registration as registration
    from tessera.data.text.registration import TextDataConfig, _datasets

    text = tmp_path / "data" / "text.txt"
    text.parent.mkdir()
    text.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:5000], encoding="utf-8")
    config = TextDataConfig(text=str(text), tokenizer=f"char:{text}", seq_len=32)
    first, _ = _datasets(config)
    cached = list((text.parent / ".tessera-cache").glob("tokens-*.npz"))
    assert len(cached) == 1

    def no_encoding(*args, **kwargs):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(registration, "encode_documents", no_encoding)
    second, _ = _datasets(config)
    assert np.array_equal(first.file.tokens, second.file.tokens)
    text.write_text(text.read_text(encoding="utf-8") + "and more", encoding="utf-8")
    with pytest.raises(AssertionError, match="tokenized again"):
        _datasets(config)  # another input: another key, so it must tokenize
    monkeypatch.undo()
    home = tmp_path / "home"
    monkeypatch.setenv("TESSERA_HOME", str(home))
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    (readonly / "text.txt").write_text("hello world " * 50, encoding="utf-8")
    readonly.chmod(0o555)
    try:
        _datasets(TextDataConfig(text=str(readonly / "text.txt"), tokenizer="byte", seq_len=8))
    finally:
        readonly.chmod(0o755)
    assert not (readonly / ".tessera-cache").exists()
    assert len(list((home / "cache" / "text").glob("tokens-*.npz"))) == 1
