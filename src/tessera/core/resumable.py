"""The resumable-data protocol: what a train sampler or dataset implements to resume exactly.

`set_epoch(epoch)`, `state_dict(samples_seen_in_epoch) -> dict` and `load_state_dict(dict)`.
The trainer passes the global sample count because, with worker prefetch, only it knows what was
consumed. `tessera.data.ResumableSampler` and `tessera.data.StreamingDataset` implement it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ResumableData(Protocol):
    def set_epoch(self, epoch: int) -> None: ...

    def state_dict(self, samples_seen_in_epoch: int) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def resumable_part(dataloader: Any) -> ResumableData | None:
    """The object that holds the data position: a resumable sampler or dataset, if any."""
    for candidate in (
        getattr(dataloader, "sampler", None),
        getattr(dataloader, "dataset", None),
        dataloader,
    ):
        if candidate is not None and all(
            callable(getattr(candidate, method, None))
            for method in ("set_epoch", "state_dict", "load_state_dict")
        ):
            return candidate
    return None
