"""Chat fine-tuning data: the model's template renders conversations, only the assistant's
turns are scored, and packed conversations are computed exactly as they would be alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tessera.data.registry import DataContext
from tessera.data.text.chat import ChatEncoder
from tessera.data.text.chat_data import ChatDataConfig, build_chat
from tessera.data.text.packed import PackedChats, best_fit
from tessera.models.gpt.hf_import import import_hf

pytest.importorskip("transformers")

CHATS = [
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Who speaks first?"},
        {"role": "assistant", "content": "The first citizen."},
        {"role": "user", "content": "And then?"},
        {"role": "assistant", "content": "All of them."},
    ],
    [
        {"role": "user", "content": "Name a city."},
        {"role": "assistant", "content": "Rome."},
    ],
    [
        {"role": "user", "content": "What is famine?"},
        {"role": "assistant", "content": "Hunger."},
    ],
]


@pytest.fixture(scope="module")
def llama(hf_folder):
    return import_hf(hf_folder("llama", max_position_embeddings=256))


def test_only_assistant_turns_are_scored(llama) -> None:
    encoder = ChatEncoder(llama.tokenizer, llama.chat_template)
    encoded = encoder.encode(CHATS[0])
    assert encoded.tokens[0] == llama.tokenizer.backend.token_to_id("<|begin_of_text|>")
    scored = [t for t, label in zip(encoded.tokens, encoded.labels) if label != -100]
    assert llama.tokenizer.decode(scored) == "The first citizen.<|eot_id|>All of them.<|eot_id|>"
    assert all(label in (-100, token) for token, label in zip(encoded.tokens, encoded.labels))
    # Training sees the assistant's turn exactly where a served prompt leaves the model.
    prompt = encoder.prompt(CHATS[0][:2])
    assert encoded.tokens[: len(prompt)] == prompt
    assert encoded.labels[len(prompt)] != -100 and encoded.labels[len(prompt) - 1] == -100


def test_best_fit_packs_tightly() -> None:
    rows = best_fit([7, 5, 4, 3, 2, 2], width=9)
    assert sorted(sorted(r) for r in rows) == [[0, 4], [1, 2], [3, 5]]


def test_packed_conversations_do_not_see_each_other(llama) -> None:
    encoder = ChatEncoder(llama.tokenizer, llama.chat_template)
    examples = [encoder.encode(chat) for chat in CHATS]
    width = sum(len(e) for e in examples) + 3
    packed = PackedChats(examples, width - 1, pad_id=0, packing=True)
    assert len(packed) == 1  # all three in one row
    row = {k: v.unsqueeze(0) for k, v in packed[0].items()}
    model = llama.train()
    with torch.no_grad():
        packed_loss = model.loss(model(row), row)
        # Each conversation alone: the same summed loss over the same scored tokens.
        total, count = 0.0, 0
        for example in examples:
            alone = {
                "input_ids": torch.tensor([example.tokens]),
                "labels": torch.tensor([example.labels]),
            }
            scored = int((alone["labels"][:, 1:] != -100).sum())
            total += float(model.loss(model(alone), alone)) * scored
            count += scored
    assert packed_loss.item() == pytest.approx(total / count, abs=1e-5)
    # Unmasked, the later conversations would read the earlier ones: the loss changes.
    unmasked = {k: v for k, v in row.items() if k != "segment_ids"}
    with torch.no_grad():
        assert abs(model.loss(model(unmasked), unmasked).item() - packed_loss.item()) > 1e-3


def _write(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_chat_builder_and_bad_records(llama, tmp_path: Path) -> None:
    good = _write(tmp_path / "chats.jsonl", [{"messages": c} for c in CHATS * 4])
    config = ChatDataConfig(path=str(good), seq_len=63, batch_size=2, val_fraction=0.25)
    loaders = build_chat(config, DataContext(model=llama))
    batch = next(iter(loaders.train))
    assert set(batch) == {"input_ids", "labels", "segment_ids"}
    assert batch["input_ids"].shape == (2, 64)
    assert "eval" in loaders.eval
    from tessera.core.errors import DataError

    cases = [
        ([{"messages": [{"content": "hi"}]}], r"bad.jsonl:1: messages\[0\] has no 'role'"),
        ([{"messages": [{"role": "robot", "content": "x"}]}], "has role 'robot'"),
        ([{"text": "x"}], "no field 'messages'"),
        ([{"messages": [{"role": "user", "content": "x"}]}], "no assistant turn"),
    ]
    for records, message in cases:
        bad = _write(tmp_path / "bad.jsonl", records)
        with pytest.raises(DataError, match=message):
            build_chat(ChatDataConfig(path=str(bad), seq_len=63), DataContext(model=llama))
