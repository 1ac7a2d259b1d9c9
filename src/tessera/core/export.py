"""Export a trained model as `model.safetensors` + `config.json`, loadable without Tessera."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from tessera.core.checkpoint import atomic_write
from tessera.core.model import TrainableModel


def export_model(model: TrainableModel, folder: str | Path) -> Path:
    """Write the bare network's weights and its config; returns the folder."""
    folder = Path(folder)
    network = model.network()
    tensors: dict[str, torch.Tensor] = {}
    seen: dict[int, str] = {}
    for name, tensor in network.state_dict().items():
        # safetensors refuses shared storage (tied weights): store each tensor once and let
        # config.json say which names are tied.
        key = tensor.data_ptr()
        if key in seen and tensor.numel() > 0:
            continue
        seen[key] = name
        tensors[name] = tensor.detach().to("cpu").contiguous()
    config = {"format": "tessera", "format_version": 1, **model.export_config()}
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / ".model.safetensors.tmp"
    save_file(tensors, str(temporary), metadata={"format": "pt"})
    temporary.replace(folder / "model.safetensors")
    atomic_write(folder / "config.json", lambda f: f.write(json.dumps(config, indent=2)), "w")
    return folder
