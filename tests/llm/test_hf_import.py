"""Hugging Face import: tiny random models of each family, built locally with transformers,
give the same logits in Tessera (fp32, 1e-4), the same tokens and chat prompts, and export
back to identical tensors; bad folders are refused by name."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from llm_support import FAMILIES, hf_logits, read_config
from safetensors.torch import load_file

from tessera.core.errors import UserError
from tessera.models.gpt import load_gpt, save_gpt
from tessera.models.gpt.hf_export import export_hf
from tessera.models.gpt.hf_import import import_hf

pytest.importorskip("transformers")

CONVERSATION = [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "Who speaks first?"},
    {"role": "assistant", "content": "The first citizen."},
    {"role": "user", "content": "And then?"},
]


@pytest.fixture(scope="module")
def folders(hf_folder) -> dict[str, Path]:
    """One folder per family: llama sharded and stored in bfloat16, the others in float32."""
    options = {"llama": {"dtype": torch.bfloat16, "shard": True}}
    return {family: hf_folder(family, **options.get(family, {})) for family in FAMILIES}


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(path))
    return tensors


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_imported_model_computes_what_transformers_computes(
    family: str, folders: dict[str, Path]
) -> None:
    import transformers

    folder = folders[family]
    model = import_hf(folder)
    config = model.config
    ids = torch.randint(
        0, model.tokenizer.vocab_size, (2, 40), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        ours = model.run(ids)
    torch.testing.assert_close(ours, hf_logits(folder, ids), rtol=0, atol=1e-4)
    # The options that make each family what it is were carried over.
    expected = {
        "gpt2": {"position": "learned", "gelu_approximate": "tanh", "tie_embeddings": True},
        "llama": {"n_kv_head": 2, "tie_embeddings": True, "rope_theta": 500000.0},
        "mistral": {"max_seq_len": 48, "tie_embeddings": False},  # its sliding window
        "qwen2": {"qkv_bias": True, "bias": False, "tie_embeddings": False},
    }[family]
    assert {k: getattr(config, k) for k in expected} == expected
    if family == "llama":
        assert config.rope_scaling.kind == "llama3" and config.rope_scaling.factor == 8.0
    # The tokenizer gives transformers' ids, special tokens (BOS) included.
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    text = "First Citizen:\nBefore we proceed any further, hear me speak."
    assert model.tokenizer.encode(text) == hf_tokenizer(text)["input_ids"]
    assert model.tokenizer.eos_id == hf_tokenizer.eos_token_id
    # The chat template, recognised from the Jinja program, renders the same prompt tokens.
    if FAMILIES[family]["jinja"]:
        prompt = [(m["role"], m["content"]) for m in CONVERSATION]
        text = hf_tokenizer.apply_chat_template(
            CONVERSATION, add_generation_prompt=True, tokenize=False
        )
        theirs = hf_tokenizer(text, add_special_tokens=False)["input_ids"]
        assert model.tokenizer.encode(model.chat_template.render(prompt)) == theirs
        assert "layout, recognised" in model.chat_template.source
    else:
        assert model.chat_template.source == "default"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_export_round_trips_to_identical_tensors(
    family: str, folders: dict[str, Path], tmp_path: Path
) -> None:
    folder = folders[family]
    save_gpt(import_hf(folder), tmp_path / "run" / "final")  # through Tessera's own format
    out = export_hf(load_gpt(tmp_path / "run"), tmp_path / "out")
    before, after = _tensors(folder), _tensors(out)
    assert sorted(before) == sorted(after)
    for name, tensor in before.items():
        assert after[name].dtype == tensor.dtype, name
        assert torch.equal(after[name], tensor), name
    assert read_config(out) == read_config(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert json.loads((out / name).read_text()) == json.loads((folder / name).read_text())


def test_context_extension_and_both_rope_config_styles(
    folders: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # transformers 4 wrote rope_theta + rope_scaling where 5 writes rope_parameters.
    folder = tmp_path / "v4"
    shutil.copytree(folders["llama"], folder)
    config = read_config(folder)
    params = config.pop("rope_parameters")
    config["rope_theta"] = params.pop("rope_theta")
    config["rope_scaling"] = params
    (folder / "config.json").write_text(json.dumps(config))
    ids = torch.randint(0, 300, (1, 30))
    with torch.no_grad():
        v4, v5 = import_hf(folder).run(ids), import_hf(folders["llama"]).run(ids)
    torch.testing.assert_close(v4, v5, rtol=0, atol=0)
    # A longer context with linear RoPE scaling: positions are stretched by the factor.
    with caplog.at_level(logging.WARNING):
        longer = import_hf(folder, overrides={"max_seq_len": 128})
    assert "beyond the 64 positions" in caplog.text
    stretched = import_hf(
        folder, overrides={"max_seq_len": 128, "rope_scaling": {"kind": "linear", "factor": 2.0}}
    )
    plain = import_hf(folder, overrides={"max_seq_len": 128, "rope_scaling": None})
    assert longer.rope_cos.shape[0] == 128
    torch.testing.assert_close(stretched.rope_cos[10], plain.rope_cos[5], rtol=0, atol=1e-6)
    assert not torch.allclose(stretched.rope_cos[10], plain.rope_cos[10])
    out = export_hf(stretched, tmp_path / "out")
    written = read_config(out)
    assert written["max_position_embeddings"] == 128
    assert written["rope_scaling"] == {"rope_type": "linear", "factor": 2.0}


def _broken(folders: dict[str, Path], tmp_path: Path, family: str) -> Path:
    folder = tmp_path / "broken"
    shutil.copytree(folders[family], folder)
    return folder


@pytest.mark.parametrize(
    ("family", "damage", "message"),
    [
        ("qwen2", lambda f: (f / "config.json").unlink(), "config.json: missing"),
        ("qwen2", lambda f: (f / "tokenizer.json").unlink(), "tokenizer.json: missing"),
        ("qwen2", lambda f: (f / "model.safetensors").rename(f / "pytorch_model.bin"), "pickled"),
        (
            "llama",
            lambda f: sorted(f.glob("model-*.safetensors"))[1].unlink(),
            r"model-00002-of-0000\d.safetensors: missing \(listed in",
        ),
        (
            "qwen2",
            lambda f: _edit(f, architectures=["FalconForCausalLM"]),
            "architecture FalconForCausalLM is not supported",
        ),
        (
            "llama",
            lambda f: _edit(
                f, rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}
            ),
            "rope type = 'yarn' is not supported",
        ),
        ("llama", lambda f: _edit(f, hidden_act="gelu"), "hidden_act = 'gelu'"),
    ],
)
def test_bad_folders_are_refused_by_name(
    family: str, damage, message: str, folders: dict[str, Path], tmp_path: Path
) -> None:
    folder = _broken(folders, tmp_path, family)
    damage(folder)
    with pytest.raises(UserError, match=message):
        import_hf(folder)


def _edit(folder: Path, **changes: object) -> None:
    config = read_config(folder)
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_sequence_longer_than_the_positions_allow_is_refused(folders: dict[str, Path]) -> None:
    with pytest.raises(UserError, match=r"model.max_seq_len: 128 .* n_positions = 64"):
        import_hf(folders["gpt2"], overrides={"max_seq_len": 128})
    with pytest.raises(UserError, match=r"model.max_seq_len: 64 is above the sliding window of 48"):
        import_hf(folders["mistral"], overrides={"max_seq_len": 64})


def test_serving_loads_a_hugging_face_folder(folders: dict[str, Path]) -> None:
    from tessera.serve.chat_template import find_template
    from tessera.serve.loading import load_model

    model, folder = load_model(None, str(folders["qwen2"]), device="cpu")
    assert model.config.qkv_bias and model.tokenizer.eos_id is not None
    assert find_template(folder).generation_prompt == "<|im_start|>assistant\n"
