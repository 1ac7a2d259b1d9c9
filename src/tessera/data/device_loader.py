"""`DeviceLoader`: a small data set kept whole on the training device, batched by indexing.

For data sets of a few hundred megabytes (Fashion-MNIST, CIFAR-10) the per-batch cost of a
`DataLoader` (fetch, collate, host-to-device copy) is larger than the step itself on a GPU. A
`DeviceLoader` copies every sample to the device once and makes each batch with one indexing
operation there. Its order is a `ResumableSampler`'s, so a run sees the same samples in the same
order as with `make_dataloader` for the same seed and epoch, and it implements the
resumable-data protocol (`tessera.core.resumable`) through that sampler: a resumed run
continues mid-epoch exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from tessera.core.errors import ConfigError
from tessera.core.world import current_world
from tessera.data.sampler import ResumableSampler

log = logging.getLogger(__name__)

_READ_CHUNK = 4096  # samples fetched per read while loading the data set onto the device


class DeviceLoader:
    """Batches of `tensors` (all of the same length) on `device`, in a resumable seeded order.

    `batch_size` is per process; each process indexes its own share of every epoch's order,
    exactly as `make_dataloader` would give it.
    """

    def __init__(
        self,
        tensors: Sequence[torch.Tensor],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
            raise ConfigError("DeviceLoader needs one or more tensors (e.g. images and labels)")
        lengths = {len(t) for t in tensors}
        if len(lengths) != 1:
            raise ConfigError(
                f"DeviceLoader: the tensors hold different numbers of samples {sorted(lengths)}; "
                "give tensors with one row per sample each"
            )
        if batch_size < 1:
            raise ConfigError(f"DeviceLoader: batch_size={batch_size} must be at least 1")
        target = torch.device(device) if device is not None else tensors[0].device
        self.tensors = tuple(t.to(target) for t in tensors)
        self.device = target
        self.batch_size = batch_size
        self.drop_last = drop_last
        position = current_world(rank, world_size)
        self.sampler = ResumableSampler(
            lengths.pop(), shuffle, seed, position.rank, position.size, drop_last
        )

    @property
    def nbytes(self) -> int:
        """Device memory the data set occupies."""
        return sum(t.numel() * t.element_size() for t in self.tensors)

    def __len__(self) -> int:
        samples = len(self.sampler)
        if self.drop_last:
            return samples // self.batch_size
        return -(-samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        # The sampler's order (from this epoch's start or its resume point), as one index
        # tensor on the device: one small copy per epoch, none per batch.
        order = torch.tensor(list(self.sampler), dtype=torch.long, device=self.device)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            if self.drop_last and len(index) < self.batch_size:
                return
            yield tuple(t[index] for t in self.tensors)

    # The resumable-data protocol, for callers that hold the loader rather than its sampler.
    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def state_dict(self, samples_seen_in_epoch: int) -> dict[str, Any]:
        return self.sampler.state_dict(samples_seen_in_epoch)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)


def dataset_tensors(
    loader: DataLoader[Any], max_bytes: int | None = None
) -> tuple[torch.Tensor, ...]:
    """Every sample of a map-style loader's data set, read once through its own collate_fn.

    Returns one tensor per field of a batch (e.g. images and labels). Raises a ConfigError if
    a batch is not a tensor or a tuple/list of tensors, or the data set is larger than
    `max_bytes`."""
    dataset = getattr(loader, "dataset", None)
    try:
        total = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(
            "device_data needs a map-style data set with a length (a DataLoader over a Dataset); "
            f"got {type(dataset).__name__}"
        ) from None
    collate = loader.collate_fn
    parts: list[tuple[torch.Tensor, ...]] = []
    held = 0
    for start in range(0, total, _READ_CHUNK):
        indices = list(range(start, min(start + _READ_CHUNK, total)))
        getitems = getattr(dataset, "__getitems__", None)
        items = getitems(indices) if callable(getitems) else [dataset[i] for i in indices]  # type: ignore[index]
        batch = collate(items)
        fields = (batch,) if isinstance(batch, torch.Tensor) else batch
        if not isinstance(fields, (tuple, list)) or not all(
            isinstance(f, torch.Tensor) for f in fields
        ):
            raise ConfigError(
                "device_data needs batches that are a tensor or a tuple/list of tensors; this "
                f"data set's batches are {type(batch).__name__}"
            )
        parts.append(tuple(fields))
        held += sum(f.numel() * f.element_size() for f in fields)
        if max_bytes is not None and held > max_bytes:
            raise ConfigError(
                f"device_data: the training set holds more than {max_bytes / 2**30:.2f} GiB "
                f"(read {start + len(indices)} of {total} samples so far); raise max_gb or keep "
                "the data on the host with the ordinary loader"
            )
    return tuple(torch.cat(column) for column in zip(*parts))
