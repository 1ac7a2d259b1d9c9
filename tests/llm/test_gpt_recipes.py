"""Every LLM recipe builds and runs (shrunk to CPU size), and LoRA fine-tuning trains only
low-rank updates on prompt-masked instruction data, then exports a plain merged model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tessera.cli.main import main
from tessera.config import load_config
from tessera.config.build import build_data, build_trainer
from tessera.data.root import find_file
from tessera.data.text import ByteTokenizer, read_documents, tokenize_to_folder
from tessera.models.gpt import GPT, GPTConfig, load_gpt, save_gpt
from tessera.models.gpt.metrics import TokenLoss
from tessera.models.gpt.registration import GPTRecipeConfig

ROOT = Path(__file__).resolve().parents[2]
SHAKESPEARE = find_file("tinyshakespeare")
GSM8K = find_file("eval", "gsm8k.jsonl")
SIZES = {"gpt-125m": (120e6, 130e6), "gpt-350m": (340e6, 360e6), "gpt-1b": (1.3e9, 1.5e9)}
TINY = ["model.n_layer=1", "model.n_head=2", "model.d_model=32", "model.max_seq_len=32"]


@pytest.fixture(scope="module")
def byte_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    text = folder / "part.txt"
    text.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:40_000], encoding="utf-8")
    tokenize_to_folder(read_documents([text]), ByteTokenizer(), folder / "tokens", seq_len=32)
    return folder / "tokens"


@pytest.mark.parametrize("recipe", sorted(SIZES))
def test_pretraining_recipes_build_and_run(recipe: str, byte_corpus: Path, tmp_path: Path) -> None:
    path = ROOT / "recipes" / f"{recipe}.yaml"
    shipped = load_config(path)
    shape = GPTRecipeConfig.model_validate(shipped.model)
    low, high = SIZES[recipe]
    assert low < shape.num_parameters() < high and shape.max_seq_len == 2048
    overrides = [
        f"data.path={byte_corpus}",
        f"model.tokenizer={byte_corpus / 'tokenizer.json'}",
        "model.vocab_size=null",
        *TINY,
        "max_duration=2ba",
        "eval_interval=2ba",
        "save_interval=null",
        "precision=fp32",
        "device=cpu",
        "device_train_microbatch_size=null",
        "data.batch_size=4",
        "data.eval_max_sequences=8",
        "data.num_workers=0",
        "algorithms={}",
        "loggers={}",
        f"run_dir={tmp_path}",
    ]
    trainer = build_trainer(load_config(path, overrides))
    trainer.fit()
    assert trainer.state.timestamp.batch == 2
    assert trainer.state.eval_results["eval"]["loss"] < 6.0  # ln(257) = 5.55 at the start


@pytest.mark.slow
def test_lora_finetuning_learns_low_rank_updates_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    base = GPT(
        GPTConfig(
            vocab_size=257, max_seq_len=384, n_layer=2, n_head=2, d_model=32, tie_embeddings=False
        ),
        tokenizer=ByteTokenizer(),
    )
    save_gpt(base, tmp_path / "base" / "final")
    overrides = [
        f"model.init_from={tmp_path / 'base'}",
        f"data.tokenizer={tmp_path / 'base'}",
        "model.lora.rank=4",
        "max_duration=20ba",
        "eval_interval=20ba",
        "save_interval=null",
        "precision=fp32",
        "data.seq_len=383",
        "data.batch_size=4",
        "data.eval_batch_size=32",
        "data.val_fraction=0.05",
        "optimizer.lr=0.02",
        "loggers={}",
        f"run_dir={tmp_path}",
    ]
    config = load_config(ROOT / "recipes" / "finetune-lora.yaml", overrides)
    assert main(["train", str(ROOT / "recipes" / "finetune-lora.yaml"), *overrides]) == 0

    tuned = load_gpt(tmp_path / "finetune-lora")  # the exported, merged plain GPT
    before, after = base.state_dict(), tuned.state_dict()
    assert set(before) == set(after)
    for name in before:
        delta = after[name] - before[name]
        if name.endswith(("qkv.weight", "proj.weight", "up.weight", "down.weight")):
            rank = torch.linalg.matrix_rank(delta, atol=1e-5)
            assert 0 < rank <= 4, name  # a low-rank update, nothing more
        else:
            assert torch.equal(delta, torch.zeros_like(delta)), name  # frozen

    def val_loss(model: GPT) -> float:
        metric = TokenLoss()
        for batch in build_data(config).eval["eval"]:
            with torch.no_grad():
                out = model.eval_forward(batch)
            metric.update(out["nll"], out["mask"])
        return float(metric.compute())

    assert val_loss(tuned) < val_loss(base) - 0.1  # the responses got more likely
    records = [json.loads(line) for line in GSM8K.read_text(encoding="utf-8").splitlines()[:1]]
    assert records[0]["context"]  # the real data the recipe trained on
