"""A tiny byte-level GPT trained for a few seconds on real eval text, saved as a run folder
(final/) and exported to Hugging Face: the model every eval test scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tessera.eval.data import find_eval_file


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models on 2 shared cores: one intra-op thread is several times faster than two
    threads contending with the other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def eval_dir() -> Path:
    return find_eval_file("piqa.jsonl").parent


def _corpus(eval_dir: Path) -> bytes:
    lines = (eval_dir / "lambada_openai.jsonl").read_text(encoding="utf-8").splitlines()[:400]
    text = "\n\n".join(json.loads(line)["context"] for line in lines)
    for name in ("piqa.jsonl", "arc_easy.jsonl"):
        for line in (eval_dir / name).read_text(encoding="utf-8").splitlines()[:300]:
            row = json.loads(line)
            text += "\n\n" + row["query"] + " " + row["choices"][row["gold"]]
    return text.encode("utf-8")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, eval_dir: Path) -> Path:
    """RUN/final with a 2-layer GPT (byte tokenizer, window 384) trained for 40 steps."""
    from tessera.data.text.tokenizers import ByteTokenizer
    from tessera.models.gpt import GPT, GPTConfig, save_gpt

    torch.manual_seed(0)
    data = torch.tensor(list(_corpus(eval_dir)), dtype=torch.long)
    config = GPTConfig(vocab_size=257, max_seq_len=384, n_layer=2, n_head=4, d_model=64)
    model = GPT(config, tokenizer=ByteTokenizer())
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        starts = torch.randint(0, len(data) - 97, (16,), generator=generator)
        batch = torch.stack([data[s : s + 97] for s in starts.tolist()])
        loss = model.loss(model({"input_ids": batch}), {"input_ids": batch})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 4.0, "the test model did not learn"  # ln(257) = 5.55
    run = tmp_path_factory.mktemp("eval") / "run"
    save_gpt(model.eval(), run / "final")
    return run


@pytest.fixture(scope="session")
def hf_folder(trained_run: Path) -> Path:
    pytest.importorskip("transformers")
    from tessera.cli.main import main

    out = trained_run.parent / "hf"
    assert main(["export", "hf", str(trained_run), str(out), "--check"]) == 0
    return out
