"""Reading a Hugging Face model folder with `transformers` without running code from it.

A folder can ask transformers to import its own Python files (`auto_map` in config.json or
tokenizer_config.json), and older ones hold pickled weights (`pytorch_model.bin`). Tessera
loads every HF folder through `from_folder`: `trust_remote_code=False`, so a folder's own code
is refused instead of imported (or asked about at an interactive prompt), and pickled weights
go through transformers' `torch.load(weights_only=True)`. Either refusal is a clear error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tessera.core.errors import CheckpointError, UserError


def from_folder(auto_class: Any, folder: str | Path, what: str, **options: Any) -> Any:
    """`auto_class.from_pretrained(folder, trust_remote_code=False, **options)`; `what` names
    the option or command the folder came from, for the error."""
    import pickle

    try:
        return auto_class.from_pretrained(str(folder), trust_remote_code=False, **options)
    except pickle.UnpicklingError as error:
        reason = next((line for line in str(error).splitlines() if "GLOBAL" in line), "")
        raise CheckpointError(
            f"{what} {folder}: its weights file holds pickled code ({reason.strip()[:200]}); it "
            "was not loaded. Use a folder with model.safetensors (`save_pretrained` writes one)"
        ) from None
    except OSError as error:
        raise CheckpointError(
            f"{what} {folder}: transformers cannot load it ({str(error).splitlines()[0][:300]})"
        ) from None
    except ValueError as error:
        if "trust_remote_code" not in str(error) and "custom code" not in str(error):
            raise
        raise UserError(
            f"{what} {folder}: the folder asks transformers to run its own Python code "
            "(auto_map in config.json or tokenizer_config.json); Tessera never runs code from "
            "a model folder. Use a model of an architecture transformers knows, or export the "
            "model with its standard classes"
        ) from None
