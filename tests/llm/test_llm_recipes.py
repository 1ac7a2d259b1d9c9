"""The issue's four commands, as a user runs them from the repository (tiny shapes, a local
Hugging Face folder that transformers builds): chat fine-tuning from `hf:PATH`, DPO on top of
it, and the export back to transformers; plus their bad-input exits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from llm_support import hf_logits, read_config
from safetensors.torch import load_file

from tessera.cli.main import main
from tessera.models.gpt import load_gpt

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
DATA = RECIPES / "data"
CPU = ["precision=fp32", "device=cpu", "loggers={}", "save_interval=null"]


@pytest.mark.slow
def test_finetune_chat_then_dpo_then_export(hf_folder, capsys) -> None:
    folder = hf_folder("qwen2", max_position_embeddings=256)
    chat = [
        f"model.init_from=hf:{folder}",
        f"data.path={DATA / 'chat-arithmetic.jsonl'}",
        "data.seq_len=127",
        "data.batch_size=4",
        "max_duration=3ba",
        "eval_interval=3ba",
        "model.loss_chunk_tokens=64",
        *CPU,
    ]
    assert main(["train", str(RECIPES / "finetune-chat.yaml"), *chat]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["eval"]["eval"]["loss"] > 0
    tuned = load_gpt("runs/finetune-chat")
    assert tuned.hf_origin["architecture"] == "Qwen2ForCausalLM"
    assert tuned.chat_template.generation_prompt == "<|im_start|>assistant\n"  # it travels

    # recipes/dpo.yaml starts from runs/finetune-chat by default.
    dpo = [
        f"data.path={DATA / 'preference-arithmetic.jsonl'}",
        "data.seq_len=63",
        "data.batch_size=4",
        "max_duration=2ba",
        "eval_interval=2ba",
        *CPU,
    ]
    assert main(["train", str(RECIPES / "dpo.yaml"), *dpo]) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["eval"]["eval"]
    assert 0 <= results["reward_accuracy"] <= 1 and "reward_margin" in results

    assert main(["export", "hf", "runs/dpo", "out", "--check"]) == 0
    assert "Qwen2ForCausalLM" in capsys.readouterr().out
    before = load_file(folder / "model.safetensors")
    after = load_file(Path("out") / "model.safetensors")
    assert sorted(before) == sorted(after)
    assert all(
        after[k].dtype == before[k].dtype and after[k].shape == before[k].shape for k in before
    )
    assert read_config(Path("out")) == read_config(folder)
    ids = torch.randint(0, 300, (1, 24))
    with torch.no_grad():
        ours = load_gpt("runs/dpo").run(ids)
    torch.testing.assert_close(hf_logits(Path("out"), ids), ours, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.init_from=hf:nowhere"], "'nowhere' is not a folder"),
        (["model.max_seq_len=512"], "model.max_seq_len: 512 is not possible"),
    ],
)
def test_bad_model_folders_exit_2(hf_folder, overrides, message, capsys) -> None:
    folder = hf_folder("gpt2")
    args = [f"model.init_from=hf:{folder}", f"data.path={DATA / 'chat-arithmetic.jsonl'}"]
    code = main(["train", str(RECIPES / "finetune-chat.yaml"), *args, *overrides, *CPU])
    assert code == 2
    assert message in capsys.readouterr().err


def test_chat_record_without_role_exits_2(hf_folder, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "chats.jsonl"
    bad.write_text(json.dumps({"messages": [{"content": "hello"}]}) + "\n")
    args = [f"model.init_from=hf:{hf_folder('qwen2', max_position_embeddings=256)}"]
    code = main(["train", str(RECIPES / "finetune-chat.yaml"), *args, f"data.path={bad}", *CPU])
    assert code == 2
    assert "chats.jsonl:1: messages[0] has no 'role'" in capsys.readouterr().err
