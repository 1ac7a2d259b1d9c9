"""Error types shared by every part of Tessera.

A `UserError` is a problem with what the user gave us (a config, a path, a value): the command
line prints its message as one paragraph, without a traceback, and exits with code 2.
Anything else is a failure of the run and exits with code 1.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input: the message names the field, file or value and what would be accepted.

    Raised in a DataLoader worker, it reaches the main process re-created by PyTorch with the
    worker's whole traceback as its message; it keeps only its own message (and says which
    worker), so the user reads one paragraph there too.
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (_unwrap_worker_message(args[0], type(self)),)
        super().__init__(*args)


def _unwrap_worker_message(message: str, kind: type) -> str:
    """The original message inside PyTorch's "Caught X in DataLoader worker process N.
    Original Traceback ..." text (torch.utils.data._utils.ExceptionWrapper), else `message`."""
    head, _, rest = message.partition("\n")
    if not (head.startswith("Caught ") and "DataLoader worker" in head and "Traceback" in rest):
        return message
    marker = f"{kind.__module__}.{kind.__qualname__}: "
    cut = rest.rfind(marker)
    if cut < 0:
        return message
    where = head.removeprefix(f"Caught {kind.__name__} ").rstrip(".")
    return f"{rest[cut + len(marker) :].strip()} (raised {where})"


class ConfigError(UserError, ValueError):
    """A run configuration that cannot be accepted."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt or does not fit the run."""


class DataError(UserError):
    """A data set that is missing, unreadable or malformed."""


def close_names(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The valid names closest to `name`, for 'did you mean' hints."""
    return difflib.get_close_matches(name, sorted(choices), n=n, cutoff=0.6)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A sentence suggesting the closest valid names, or listing them all when none is close."""
    choices = sorted(choices)
    close = close_names(name, choices)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "valid names: " + ", ".join(choices) + "."
