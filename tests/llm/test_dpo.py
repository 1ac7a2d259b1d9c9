"""DPO: the loss is the paper's formula (checked by hand and against a direct computation),
preference records are read through the chat template, and training through recipes/dpo.yaml
raises the chosen-vs-rejected reward margin."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tessera.cli.main import main
from tessera.config import load_config
from tessera.config.build import build_data
from tessera.data.registry import DataContext
from tessera.data.text import ByteTokenizer
from tessera.data.text.preference import PreferenceDataConfig, build_preference
from tessera.models.gpt import GPT, GPTConfig, load_gpt, save_gpt
from tessera.models.gpt.dpo import DPO, dpo_loss

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "dpo.yaml"
PAIRS = ROOT / "recipes" / "data" / "preference-arithmetic.jsonl"


def tiny_gpt(seed: int) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size=257, max_seq_len=96, n_layer=2, n_head=2, d_model=32, tie_embeddings=False
    )
    return GPT(config, tokenizer=ByteTokenizer())


def test_loss_matches_a_hand_computation() -> None:
    # margin = ((-1) - (-1.5)) - ((-2) - (-1.5)) = 1; beta 0.5: -log sigmoid(0.5) = log(1 + e^-0.5)
    loss = dpo_loss(
        torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.5]), 0.5
    )
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-0.5)), abs=1e-6)
    assert loss.item() == pytest.approx(0.474077, abs=1e-6)


def test_model_loss_equals_a_direct_computation(tmp_path: Path) -> None:
    policy, reference = tiny_gpt(0), tiny_gpt(1)
    model = DPO(policy, beta=0.3, reference="frozen", frozen=reference)
    data = build_preference(
        PreferenceDataConfig(path=str(PAIRS), tokenizer="byte", seq_len=95, batch_size=4),
        DataContext(),
    )
    batch = next(iter(data.train))
    loss = model.loss(model(batch), batch)

    def logp(net: GPT, side: str) -> torch.Tensor:  # sum of log p(token) over answer tokens
        ids, labels = batch[f"{side}_input_ids"], batch[f"{side}_labels"]
        logprobs = F.log_softmax(net.run(ids[:, :-1]).float(), dim=-1)
        total = torch.zeros(ids.shape[0])
        for row in range(ids.shape[0]):
            for t in range(1, ids.shape[1]):
                if labels[row, t] != -100:
                    total[row] += logprobs[row, t - 1, labels[row, t]]
        return total

    with torch.no_grad():
        margin = (logp(policy, "chosen") - logp(reference, "chosen")) - (
            logp(policy, "rejected") - logp(reference, "rejected")
        )
    expected = -F.logsigmoid(0.3 * margin).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    loss.backward()
    assert all(p.grad is None for p in reference.parameters())  # the reference stays fixed
    assert policy.lm_head.weight.grad.abs().sum() > 0
    assert not any(k.startswith("_frozen") for k in model.state_dict())  # policy only


def test_records_are_read_through_the_template(tmp_path: Path) -> None:
    from tessera.core.errors import DataError

    records = tmp_path / "pairs.jsonl"
    records.write_text(
        json.dumps({"prompt": "2+2?", "chosen": "4", "rejected": "5"})
        + "\n"
        + json.dumps({"prompt": "3+3?", "chosen": "6"})
        + "\n"
    )
    config = PreferenceDataConfig(path=str(records), tokenizer="byte", seq_len=31)
    with pytest.raises(DataError, match=r"pairs.jsonl:2: no 'rejected'"):
        build_preference(config, DataContext())


@pytest.mark.slow
def test_dpo_recipe_raises_the_reward_margin(tmp_path: Path, capsys) -> None:
    base = tiny_gpt(2)
    save_gpt(base, tmp_path / "base" / "final")
    # A preference a tiny model can learn: the same reply style is always the chosen one.
    pairs = tmp_path / "pairs.jsonl"
    names = ["Rome", "Paris", "Lima", "Oslo", "Cairo", "Delhi", "Quito", "Bern"]
    pairs.write_text(
        "".join(
            json.dumps(
                {
                    "prompt": f"Tell me about {name} ({i}).",
                    "chosen": f"Gladly: {name} is a city.",
                    "rejected": f"no. {name.lower()}?",
                }
            )
            + "\n"
            for i in range(12)
            for name in names
        )
    )
    overrides = [
        f"model.init_from={tmp_path / 'base'}",
        f"data.path={pairs}",
        "data.seq_len=95",
        "data.batch_size=8",
        "max_duration=24ba",
        "eval_interval=24ba",
        "save_interval=null",
        "precision=fp32",
        "optimizer.lr=0.01",
        "model.beta=0.5",
        "loggers={}",
        f"run_dir={tmp_path}",
    ]
    assert main(["train", str(RECIPE), *overrides]) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["eval"]["eval"]
    assert {"loss", "reward_accuracy", "reward_margin"} <= set(results)
    tuned = load_gpt(tmp_path / "dpo")  # the exported policy: a plain GPT, adapters merged
    config = load_config(RECIPE, overrides)

    def mean_margin(policy: GPT) -> float:
        model = DPO(policy, beta=0.5, reference="frozen", frozen=base)
        margins = []
        with torch.no_grad():
            for batch in build_data(config, model=policy).train:
                stats = model.statistics(model(batch))
                margins.append(stats["reward_margin"])
        return float(torch.cat(margins).mean())

    assert mean_margin(base) == pytest.approx(0.0, abs=1e-6)  # the policy starts at the reference
    assert mean_margin(tuned) > 0.5


def test_record_without_rejected_answer_exits_2(tmp_path: Path, capsys) -> None:
    base = tiny_gpt(3)
    save_gpt(base, tmp_path / "base" / "final")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "hi", "chosen": "hello"}) + "\n")
    code = main(
        [
            "train",
            str(RECIPE),
            f"model.init_from={tmp_path / 'base'}",
            f"data.path={bad}",
            f"run_dir={tmp_path}",
        ]
    )
    assert code == 2
    assert "bad.jsonl:1: no 'rejected'" in capsys.readouterr().err
