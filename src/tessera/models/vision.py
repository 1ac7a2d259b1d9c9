"""Vision models registered for recipes."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from tessera.core.component import ComponentConfig
from tessera.core.registry import builder
from tessera.models.module_with_loss import ModuleWithLoss
from tessera.models.resnet import ResNet


class ResNetConfig(ComponentConfig):
    """A small ResNet classifier for low-resolution images."""

    name: str = "resnet"
    num_classes: int = Field(10, ge=2, description="number of classes")
    in_channels: int = Field(1, ge=1, description="input image channels")
    width: int = Field(16, ge=1, description="channels of the first stage")
    blocks_per_stage: list[Annotated[int, Field(ge=1)]] = Field(
        default=[1, 1, 1],
        min_length=1,
        max_length=8,
        description="residual blocks in each stage; each stage halves the resolution and "
        "doubles the channels",
    )


def classification_metrics(num_classes: int) -> dict[str, Metric]:
    return {"accuracy": MulticlassAccuracy(num_classes=num_classes, average="micro")}


@builder(ResNetConfig)
def build_resnet(config: ResNetConfig) -> ModuleWithLoss:
    kwargs = config.model_dump(exclude={"name"})
    return ModuleWithLoss(
        ResNet(**kwargs),
        loss_fn=nn.functional.cross_entropy,
        metrics=lambda: classification_metrics(config.num_classes),
        config={"architecture": "tessera.models.resnet.ResNet", "kwargs": kwargs},
    )
