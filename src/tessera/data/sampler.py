"""Resumable, deterministic data loading for map-style datasets.

`ResumableSampler` draws one global order per epoch from (seed, epoch) alone, gives each rank
its stride of it, and can start mid-epoch at any global sample count without reading the skipped
samples. `make_dataloader` builds a `DataLoader` around it whose worker seeds also depend only on
(seed, epoch), so a resumed run sees exactly the batches an uninterrupted run would.

Both implement the resumable-data protocol (`tessera.core.resumable`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from tessera.core.determinism import worker_seed
from tessera.core.errors import CheckpointError
from tessera.core.world import current_world


class ResumableSampler(Sampler[int]):
    """Indices of one rank's share of a seeded global order, resumable mid-epoch."""

    def __init__(
        self,
        num_samples: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.generator = generator  # the DataLoader's, reseeded each epoch for its workers
        self.epoch = 0
        self._resume_epoch: int | None = None
        self._resume_samples = 0
        self._offset = 0

    def global_order(self, epoch: int) -> list[int]:
        """The order of all samples in `epoch`, the same on any number of ranks."""
        if not self.shuffle:
            return list(range(self.num_samples))
        generator = torch.Generator().manual_seed(worker_seed(self.seed, epoch))
        return torch.randperm(self.num_samples, generator=generator).tolist()

    def _rank_length(self) -> int:
        if self.drop_last:
            return self.num_samples // self.world_size
        return -(-self.num_samples // self.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self._resume_epoch == epoch:
            self._offset = self._resume_samples // self.world_size
        else:
            self._offset = 0
        self._resume_epoch = None
        if self.generator is not None:
            self.generator.manual_seed(worker_seed(self.seed, epoch, worker_id=7919))

    def __iter__(self) -> Iterator[int]:
        order = self.global_order(self.epoch)
        total = self._rank_length() * self.world_size
        if total > len(order):  # pad by wrapping so every rank gets the same count
            order = order + order[: total - len(order)]
        mine = order[self.rank : total : self.world_size]
        return iter(mine[self._offset :])

    def __len__(self) -> int:
        return self._rank_length() - self._offset

    def state_dict(self, samples_seen_in_epoch: int) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "samples_seen": int(samples_seen_in_epoch),
            "num_samples": self.num_samples,
            "seed": self.seed,
            "shuffle": self.shuffle,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_samples"] != self.num_samples or state["seed"] != self.seed:
            raise CheckpointError(
                f"the checkpoint's data position is for {state['num_samples']} samples with "
                f"seed {state['seed']}, but this run has {self.num_samples} samples with seed "
                f"{self.seed}; resume with the same data set and seed, or start a new run"
            )
        self._resume_epoch = int(state["epoch"])
        self._resume_samples = int(state["samples_seen"])


def seed_worker(worker_id: int) -> None:
    """Seed Python and NumPy in a dataloader worker from the seed torch gave it."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_dataloader(
    dataset: Dataset[Any],
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    pin_memory: bool = False,
) -> DataLoader[Any]:
    """A DataLoader over a map-style dataset with a resumable, deterministic sampler, or over
    an iterable dataset that orders itself (`StreamingDataset`).

    `batch_size` is per process. Each process reads its own share of every epoch; `rank` and
    `world_size` default to this process's place in the job (one process: all of it). The
    DataLoader always has its own generator, so creating an iterator never draws from the
    global torch RNG that dropout and the speed-up methods use.
    """
    if isinstance(dataset, IterableDataset):
        return _iterable_loader(
            dataset, batch_size, seed, num_workers, drop_last, collate_fn, pin_memory
        )
    if not isinstance(dataset, Sized):
        raise TypeError("make_dataloader needs a map-style dataset with a length")
    position = current_world(rank, world_size)
    rank, world_size = position.rank, position.size
    generator = torch.Generator()
    sampler = ResumableSampler(
        len(dataset), shuffle, seed, rank, world_size, drop_last, generator=generator
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=False,
        multiprocessing_context="fork" if num_workers > 0 and _can_fork() else None,
    )


def _iterable_loader(
    dataset: IterableDataset[Any],
    batch_size: int,
    seed: int,
    num_workers: int,
    drop_last: bool,
    collate_fn: Callable[[list[Any]], Any] | None,
    pin_memory: bool,
) -> DataLoader[Any]:
    own = getattr(dataset, "batch_size", batch_size)
    if own is not None and own != batch_size:
        raise ValueError(
            f"the dataset deals batches of {own} samples to the DataLoader's workers but the "
            f"DataLoader collects batches of {batch_size}; give both the same batch_size"
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(worker_seed(seed, 0)),
        multiprocessing_context="fork" if num_workers > 0 and _can_fork() else None,
    )


def _can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()
