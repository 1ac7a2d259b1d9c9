"""Finding and loading the model a serving command was pointed at.

A Tessera run folder (its `final/`), an exported model folder, or, with `--hf PATH`, a Hugging
Face model converted by the importer (`tessera.models.gpt.hf_import.import_hf(path)`, which
returns a GPT with its tokenizer attached; until that module exists `--hf` says so).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from tessera.core.errors import CheckpointError, UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
HF_IMPORTER = "tessera.models.gpt.hf_import"


def model_folder(path: str | Path) -> Path:
    """The exported model inside `path`, or an error saying which checkpoint to export."""
    from tessera.models.gpt.checkpoint import find_checkpoint

    try:
        return find_checkpoint(path)
    except CheckpointError:
        pass
    folder = Path(path)
    if not folder.exists():
        raise CheckpointError(
            f"{str(folder)!r} does not exist; give a run folder or an exported model folder."
        )
    newest = newest_checkpoint(folder / "checkpoints")
    if newest is None:
        raise CheckpointError(
            f"{str(folder)!r} holds no exported model (config.json + model.safetensors, there or "
            "in final/) and no checkpoints; train the run to its end (`tessera train` writes "
            "final/) or point at an exported model folder."
        )
    if newest.is_dir():
        how = f"export it with `tessera consolidate {newest} --out {folder / 'final'}`"
    else:
        how = "let the run finish (`tessera train` with its recipe resumes and writes final/)"
    raise CheckpointError(
        f"{str(folder)!r} has no final model (final/config.json + final/model.safetensors): the "
        f"run has not finished. Its newest checkpoint is {newest}; {how}, then serve the run "
        "folder again."
    )


def newest_checkpoint(folder: Path) -> Path | None:
    """The most recent checkpoint (a `ep<E>-ba<B>.pt` file or sharded folder) in `folder`."""
    if not folder.is_dir():
        return None
    candidates = [p for p in folder.iterdir() if p.name.startswith("ep") and "-ba" in p.name]

    def batches(p: Path) -> int:
        digits = p.name.split("-ba", 1)[1].split(".", 1)[0]
        return int(digits) if digits.isdigit() else -1

    return max(candidates, key=batches, default=None)


def pick_device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise UserError(f"--dtype {name!r}: choose auto, {', '.join(DTYPES)}.")
    return DTYPES[name]


def load_model(
    path: str | None, hf: str | None, device: str | None = None, dtype: str = "auto"
) -> tuple[Any, Path | None]:
    """The model (tokenizer attached, eval mode, on its device) and the folder it came from."""
    where = pick_device(device)
    if where.type == "cuda" and where.index is not None:
        torch.cuda.set_device(where)  # streams and CUDA graphs are made on the current device
    if hf is not None:
        try:
            importer = importlib.import_module(HF_IMPORTER)
        except ModuleNotFoundError:
            raise UserError(
                f"--hf {hf}: this Tessera has no Hugging Face importer yet ({HF_IMPORTER}); "
                "serve a Tessera run or exported model folder instead."
            ) from None
        model, folder = importer.import_hf(hf), Path(hf)
    else:
        if path is None:
            raise UserError("give a run folder or exported model folder (or --hf PATH).")
        from tessera.models.gpt.checkpoint import load_gpt

        folder = model_folder(path)
        model = load_gpt(folder)
    if model.tokenizer is None:
        raise UserError(f"{folder}: the model was saved without a tokenizer; serving needs one.")
    return cast_weights(model.to(where), pick_dtype(dtype, where)).eval(), folder


def cast_weights(model: Any, dtype: torch.dtype) -> Any:
    """Parameters to `dtype`; buffers (RoPE tables, ALiBi slopes) stay float32 for accuracy."""
    for parameter in model.parameters():
        parameter.data = parameter.data.to(dtype)
    return model
