"""DeviceData: keep a small training set whole on the device and batch it there.

A speed-run staple (airbench keeps CIFAR-10 on the GPU): with the data in device memory each
batch is one indexing operation on the device, with no collate, no host copy and no worker
processes. At INIT the Algorithm reads every training sample once through the loader's own
data set and collate function, copies them to the run's device and replaces the training loader
by a `tessera.data.device_loader.DeviceLoader` with the same batch size, seed, shuffle, drop_last
and rank share, whose order is the original sampler's: the run trains on the same batches in
the same order, resumes mid-epoch exactly, and the math does not change. Evaluation data stay
where they are (evaluation reads each sample once per evaluation).

Samples are read once: a data set that draws random transforms per sample in `__getitem__`
would have them frozen; use batch-level methods for augmentation instead.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError
from tessera.core.event import Event
from tessera.data.device_loader import DeviceLoader, dataset_tensors
from tessera.data.sampler import ResumableSampler

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

log = logging.getLogger(__name__)

NAME = "device_data"
__all__ = ["DeviceData", "DeviceDataConfig", "to_device_loader"]


class DeviceDataConfig(ComponentConfig):
    max_gb: float = Field(
        4.0, gt=0.0, allow_inf_nan=False, description="refuse training sets larger than this"
    )


def to_device_loader(
    loader: Any, device: torch.device | str, max_gb: float = DeviceDataConfig().max_gb
) -> DeviceLoader:
    """A `DeviceLoader` on `device` with the samples and order of `loader`.

    `loader` must be a DataLoader over a map-style data set with a `ResumableSampler` (what
    `tessera.data.make_dataloader` and the registered data sets build), so the order can be
    kept."""
    sampler = getattr(loader, "sampler", None)
    if not isinstance(sampler, ResumableSampler):
        raise ConfigError(
            f"algorithm '{NAME}' needs a training loader with a resumable sampler "
            "(tessera.data.make_dataloader, or a registered data set); got "
            f"{type(loader).__name__} with sampler {type(sampler).__name__}. Build the loader "
            "with make_dataloader, or remove device_data"
        )
    batch_size = getattr(loader, "batch_size", None)
    if not isinstance(batch_size, int):
        raise ConfigError(f"algorithm '{NAME}' needs a loader with a fixed batch_size")
    tensors = dataset_tensors(loader, int(max_gb * 2**30))
    if len(tensors[0]) != sampler.num_samples:
        raise ConfigError(
            f"algorithm '{NAME}': the data set gave {len(tensors[0])} samples but the sampler "
            f"expects {sampler.num_samples}"
        )
    return DeviceLoader(
        tensors,
        batch_size,
        shuffle=sampler.shuffle,
        seed=sampler.seed,
        drop_last=sampler.drop_last,
        rank=sampler.rank,
        world_size=sampler.world_size,
        device=device,
    )


class DeviceData(Algorithm):
    """Replace the training loader by a `DeviceLoader` on the run's device at INIT."""

    name = NAME
    Config = DeviceDataConfig
    runs_before = ("patch_whitening",)  # whitening then reads its samples from the device

    def match(self, event: Event, state: State) -> bool:
        return event == Event.INIT

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if isinstance(state.train_dataloader, DeviceLoader):
            return
        loader = to_device_loader(state.train_dataloader, state.device, self.config.max_gb)
        state.train_dataloader = loader
        log.info(
            "device_data: %d training samples (%.1f MB) kept on %s",
            loader.sampler.num_samples,
            loader.nbytes / 1e6,
            state.device,
        )
