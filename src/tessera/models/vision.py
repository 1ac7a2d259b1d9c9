"""Vision models registered for recipes."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator
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
    blocks_per_stage: list[Annotated[int, Field(ge=0)]] = Field(
        default=[1, 1, 1],
        min_length=1,
        max_length=8,
        description="residual blocks in each stage; each stage halves the resolution and "
        "doubles the channels (0 leaves a stage out: the next one starts from the stem)",
    )

    @model_validator(mode="after")
    def _some_blocks(self) -> ResNetConfig:
        if not any(self.blocks_per_stage):
            raise ValueError(
                f"blocks_per_stage {self.blocks_per_stage} has no block; give at least one "
                "stage one block or more"
            )
        return self


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
