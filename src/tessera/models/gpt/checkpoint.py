"""Saving and loading exported GPT models: `model.safetensors` + `config.json`.

This is the trainer's export format (the run folder's `final/`), readable without Tessera: the
config is plain JSON (`GPT.export_config()`), the weights plain safetensors. Loading checks
every tensor's shape against the config first and names the first mismatch, instead of
failing deep inside PyTorch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from tessera.core.errors import CheckpointError
from tessera.models.gpt.config import GPTConfig
from tessera.models.gpt.model import EXPORT_FORMAT, GPT

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_WRAPPER_PREFIXES = ("_orig_mod.", "module.", "model.")


def find_checkpoint(path: str | Path) -> Path:
    """The folder holding config.json and model.safetensors: `path` itself, or the `final/`
    folder of a run folder."""
    folder = Path(path)
    for candidate in (folder, folder / "final"):
        if (candidate / CONFIG_NAME).is_file() and (candidate / WEIGHTS_NAME).is_file():
            return candidate
    raise CheckpointError(
        f"{str(folder)!r} holds no exported model: expected {CONFIG_NAME} and {WEIGHTS_NAME} "
        "there or in its final/ folder (written at the end of `tessera train`)."
    )


def save_gpt(model: GPT, folder: str | Path) -> Path:
    """Write weights and config into `folder` (each file atomically)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        state.pop("lm_head.weight", None)
    temporary = folder / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(temporary), metadata={"format": "pt"})
    os.replace(temporary, folder / WEIGHTS_NAME)
    config_temp = folder / (CONFIG_NAME + ".tmp")
    config_temp.write_text(json.dumps(model.export_config(), indent=1), encoding="utf-8")
    os.replace(config_temp, folder / CONFIG_NAME)
    return folder


def read_export_config(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{folder / CONFIG_NAME}: not readable JSON ({error}).") from None
    if data.get("format") != EXPORT_FORMAT:
        raise CheckpointError(
            f"{folder / CONFIG_NAME} describes a {data.get('format')!r} model, not a Tessera GPT "
            f"({EXPORT_FORMAT!r}); `tessera generate` and `tessera export hf` need a GPT."
        )
    return data


def load_gpt(
    path: str | Path, device: str | torch.device = "cpu", overrides: dict[str, Any] | None = None
) -> GPT:
    """Rebuild an exported GPT (with its tokenizer attached, when one was saved).

    `overrides` changes options that do not affect the weights' shapes (dropout) for
    fine-tuning."""
    from tessera.core.export import load_network_weights, read_model_file
    from tessera.data.text.tokenizers import tokenizer_from_dict

    folder = find_checkpoint(path)
    data = read_export_config(folder)
    saved = {k: v for k, v in data["model"].items() if k not in _RETIRED_FIELDS}
    config = GPTConfig.parse({**saved, **(overrides or {})})
    tokenizer = tokenizer_from_dict(data["tokenizer"]) if data.get("tokenizer") else None
    model = GPT(config, tokenizer=tokenizer)
    state = _strip_prefixes(read_model_file(folder / WEIGHTS_NAME))
    load_network_weights(model, state, str(folder / WEIGHTS_NAME))
    attach_extras(model, data, folder)
    return model.to(device).eval()


def attach_extras(model: GPT, data: dict[str, Any], folder: Path) -> None:
    """The chat template and Hugging Face origin an export's config.json carries."""
    if data.get("chat_template"):
        from tessera.serve.chat_template import template_from_dict

        model.chat_template = template_from_dict(data["chat_template"], str(folder / CONFIG_NAME))
    if data.get("hf_origin"):
        model.hf_origin = data["hf_origin"]


# Fields older exports carry that no longer shape the model (activation checkpointing is now a
# run setting, not a model option).
_RETIRED_FIELDS = ("activation_checkpointing",)


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _WRAPPER_PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state
