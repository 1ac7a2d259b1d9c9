"""The model a run hands over: `model.safetensors` + `config.json`, loadable without Tessera.

`write_model_folder` is the one writer of that layout (single-process export, the gathered
export of a sharded run and `tessera consolidate` all use it). safetensors refuses tensors that
share storage, so tied weights are stored once and `config.json` says which names are tied.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from tessera.core.files import atomic_write_path, atomic_write_text, writing
from tessera.core.model import TrainableModel

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_EXPORT_AGAIN = (
    "A model already in that folder is intact (each file is replaced only once complete), and "
    "so are the run's checkpoints: free some space and run the same command again (a finished "
    "run finds itself complete and writes its model again)"
)


def untied_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of a state dict with each shared storage kept once (the first name)."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in state.items():
        key = tensor.data_ptr()
        if key in seen and tensor.numel() > 0:
            continue
        seen.add(key)
        tensors[name] = tensor
    return tensors


def write_model_folder(
    tensors: dict[str, torch.Tensor], config: dict[str, Any], folder: str | Path
) -> Path:
    """Write `model.safetensors` and `config.json` into `folder` atomically; returns it."""
    folder = Path(folder)
    plain = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    text = json.dumps({"format": "tessera", "format_version": 1, **config}, indent=2)
    with writing("the model", folder, after=_EXPORT_AGAIN):
        atomic_write_path(
            folder / MODEL_FILE,
            lambda path: save_file(plain, str(path), metadata={"format": "pt"}),
        )
        atomic_write_text(folder / CONFIG_FILE, text)
    return folder


def export_model(model: TrainableModel, folder: str | Path) -> Path:
    """Write the bare network's weights and its config; returns the folder."""
    tensors = untied_tensors(model.network().state_dict())
    return write_model_folder(tensors, model.exported_config(), folder)


def read_model_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a `model.safetensors` file; a clear error if it is not one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from tessera.core.errors import CheckpointError

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({error}); it may be truncated or "
            "damaged: export the model again (`tessera export` / the run's final/ folder)"
        ) from None


def misfit(
    expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], source: str = "file"
) -> str:
    """Which tensors of `given` do not fit a model whose state is `expected` (names and both
    shapes), or '' when they all fit. A name missing from `given` is fine when it shares
    storage with one that is there (tied weights are stored once)."""
    mismatched = [
        f"{name}: {source} {tuple(tensor.shape)} vs model {tuple(expected[name].shape)}"
        for name, tensor in given.items()
        if name in expected
        and hasattr(tensor, "shape")
        and tuple(tensor.shape) != tuple(expected[name].shape)
    ]
    unexpected = sorted(set(given) - set(expected))
    stored = {expected[name].data_ptr() for name in given if name in expected}
    missing = sorted(
        name for name in set(expected) - set(given) if expected[name].data_ptr() not in stored
    )

    def listed(names: list[str]) -> str:
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        return ", ".join(names[:5]) + more

    return "; ".join(
        part
        for part in (
            "shapes differ: " + listed(mismatched) if mismatched else "",
            "missing: " + listed(missing) if missing else "",
            "not in the model: " + listed(unexpected) if unexpected else "",
        )
        if part
    )


def load_network_weights(
    model: TrainableModel, tensors: dict[str, torch.Tensor], source: str
) -> None:
    """Load exported tensors into the model's network, naming any tensor that does not fit."""
    from tessera.core.errors import CheckpointError

    network = model.network()
    details = misfit(network.state_dict(), tensors)
    if details:
        raise CheckpointError(
            f"{source} does not fit this model ({details}); use the configuration the model was "
            "trained with (the run folder's config.yaml)"
        )
    network.load_state_dict(tensors, strict=False)
