"""A third-party Tessera plug-in, as a user would write one: a method and a data set.

Its package metadata (see `entry_points.txt` beside this package in the test) declares

    [tessera.algorithms]
    gradient_noise = tessera_example_plugin:GradientNoise

    [tessera.data]
    blobs = tessera_example_plugin:build_blobs

so recipes can name `gradient_noise` and `blobs` once the package is installed.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch.utils.data import TensorDataset

from tessera import Algorithm, ComponentConfig, Event
from tessera.core.registry import builder
from tessera.data.registry import DataLoaders, per_rank_batch_size
from tessera.data.sampler import make_dataloader


class GradientNoiseConfig(ComponentConfig):
    std: float = Field(0.01, gt=0, description="standard deviation of the added noise")


class GradientNoise(Algorithm):
    """Adds Gaussian noise to every gradient before the optimizer step."""

    name = "gradient_noise"
    Config = GradientNoiseConfig

    def match(self, event, state):
        return event == Event.BEFORE_OPTIMIZER_STEP

    def apply(self, event, state, logger):
        for parameter in state.model.parameters():
            if parameter.grad is not None:
                parameter.grad.add_(torch.randn_like(parameter.grad) * self.config.std)
        logger.log_metrics({"gradient_noise/applied": 1.0}, step=state.timestamp.batch)


class BlobsConfig(ComponentConfig):
    name: str = "blobs"
    samples: int = Field(256, ge=8)
    batch_size: int = Field(32, ge=1)


@builder(BlobsConfig)
def build_blobs(config: BlobsConfig, context) -> DataLoaders:
    """Two Gaussian blobs of 28x28 "images", labelled 0 and 1."""
    generator = torch.Generator().manual_seed(context.seed)
    labels = torch.randint(0, 2, (config.samples,), generator=generator)
    images = torch.randn(config.samples, 1, 28, 28, generator=generator) + labels.view(-1, 1, 1, 1)
    data = TensorDataset(images, labels)
    batch = per_rank_batch_size(config.batch_size, context)
    loader = make_dataloader(
        data, batch, seed=context.seed, rank=context.rank, world_size=context.world_size
    )
    evaluation = make_dataloader(data, 64, shuffle=False)
    return DataLoaders(train=loader, eval={"eval": evaluation})
