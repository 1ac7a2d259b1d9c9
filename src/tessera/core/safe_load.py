"""Loading files in torch's pickle format as data only, with one clear error when they are not.

`torch.load(weights_only=True)` admits tensors and plain Python values and refuses every other
class, since unpickling one could run code. `load_plain` is how Tessera calls it, so a refusal
always names the file and the class and says that nothing was run.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import IO, Any

import torch

from tessera.core.errors import CheckpointError

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")  # how torch's weights-only unpickler names a class


class UnsafeCheckpoint(CheckpointError):
    """A checkpoint file that holds something other than data (reading it could run code)."""


def refused(source: str, what: str) -> UnsafeCheckpoint:
    """The error for a file that refers to code (`what`: the class or function it names)."""
    return UnsafeCheckpoint(
        f"{source} refers to {what}, which is not plain data; it was not read, since "
        "unpickling it could run code. The file was altered or was not written by Tessera: "
        "use another checkpoint"
    )


def load_plain(source: str | Path | IO[bytes], name: str | None = None) -> Any:
    """`torch.load(source, weights_only=True)` on the CPU; `name` says what it is in errors."""
    name = name or str(source)
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        named = _GLOBAL.search(str(error))
        if named:
            raise refused(name, named.group(1)) from None
        raise _unreadable(name, error) from None
    except Exception as error:
        raise _unreadable(name, error) from None


def _unreadable(name: str, error: BaseException) -> CheckpointError:
    first = (str(error).strip().splitlines() or [""])[0][:200]
    return CheckpointError(
        f"{name} cannot be read ({type(error).__name__}: {first}); it may be truncated or "
        "not a Tessera checkpoint"
    )
