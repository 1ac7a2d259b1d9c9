"""Fixtures for the method tests: real Fashion-MNIST images, a tiny ResNet, a trainer builder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from tessera.data.fashion_mnist import FashionMNIST, collate_ready_batch
from tessera.data.sampler import make_dataloader
from tessera.models import ModuleWithLoss
from tessera.models.resnet import ResNet

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "fashion-mnist"


class FirstImages(torch.utils.data.Dataset):
    def __init__(self, base: FashionMNIST, start: int, count: int) -> None:
        self.images = base.images[start : start + count]
        self.labels = base.labels[start : start + count]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices):
        index = torch.as_tensor(indices)
        return self.images[index], self.labels[index]


@pytest.fixture(scope="session")
def fashion_test() -> FashionMNIST:
    return FashionMNIST("test", DATA)


@pytest.fixture(scope="session")
def images(fashion_test) -> tuple[torch.Tensor, torch.Tensor]:
    """64 real Fashion-MNIST test images (normalised, 1x28x28) and their labels."""
    return fashion_test.images[:64].clone(), fashion_test.labels[:64].clone()


def accuracy_metrics():
    return {"accuracy": MulticlassAccuracy(num_classes=10, average="micro")}


def tiny_resnet(seed: int = 0, width: int = 8) -> ModuleWithLoss:
    torch.manual_seed(seed)
    return ModuleWithLoss(ResNet(width=width, blocks_per_stage=[1, 1, 1]), metrics=accuracy_metrics)


def tiny_mlp(seed: int = 0) -> ModuleWithLoss:
    torch.manual_seed(seed)
    network = nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 128),
        nn.ReLU(),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    return ModuleWithLoss(network, metrics=accuracy_metrics)


@pytest.fixture
def loaders(fashion_test):
    """(train, eval) loaders over real images: `batches` batches of 16 to train on."""

    def build(batches: int = 3, batch_size: int = 16, shuffle: bool = True):
        train = make_dataloader(
            FirstImages(fashion_test, 0, batches * batch_size),
            batch_size,
            shuffle,
            0,
            collate_fn=collate_ready_batch,
        )
        evaluation = make_dataloader(
            FirstImages(fashion_test, 5000, 64),
            64,
            shuffle=False,
            collate_fn=collate_ready_batch,
        )
        return train, evaluation

    return build


@pytest.fixture
def make_trainer(loaders):
    """Build a Trainer over the tiny ResNet (or a given model) with the given algorithms."""
    from tessera.core.trainer import Trainer

    def build(algorithms=(), model=None, batches=3, max_duration="1ep", lr=0.05, **kwargs):
        model = model if model is not None else tiny_resnet()
        train, evaluation = loaders(batches)
        optimizer = kwargs.pop("optimizer", None) or torch.optim.SGD(
            model.parameters(), lr=lr, momentum=0.9
        )
        return Trainer(
            model,
            train,
            max_duration,
            optimizers=optimizer,
            eval_dataloaders=evaluation,
            algorithms=list(algorithms),
            device="cpu",
            **kwargs,
        )

    return build
