from __future__ import annotations

import pytest
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from tessera.data.fashion_mnist import FashionMNIST, collate_ready_batch
from tessera.data.sampler import make_dataloader
from tessera.models import ModuleWithLoss


@pytest.fixture(scope="session")
def fashion_test_split(fashion_mnist_dir):
    return FashionMNIST("test", fashion_mnist_dir)


class Subset(torch.utils.data.Dataset):
    def __init__(self, base, count):
        self.images, self.labels = base.images[:count], base.labels[:count]

    def __len__(self):
        return len(self.labels)

    def __getitems__(self, indices):
        index = torch.as_tensor(indices)
        return self.images[index], self.labels[index]


@pytest.fixture
def small_loaders(fashion_test_split):
    """Real Fashion-MNIST images: 256 to train on, 200 to evaluate."""

    def build(batch_size=32, shuffle=True, seed=0, num_workers=0):
        train = make_dataloader(
            Subset(fashion_test_split, 256),
            batch_size,
            shuffle,
            seed,
            num_workers,
            collate_fn=collate_ready_batch,
        )
        evaluation = make_dataloader(
            Subset(fashion_test_split, 200), 100, shuffle=False, collate_fn=collate_ready_batch
        )
        return train, evaluation

    return build


def tiny_classifier(seed: int = 0) -> ModuleWithLoss:
    torch.manual_seed(seed)
    network = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    return ModuleWithLoss(
        network, metrics=lambda: {"accuracy": MulticlassAccuracy(num_classes=10, average="micro")}
    )


@pytest.fixture
def classifier():
    """A factory of small real classifiers (seeded)."""
    return tiny_classifier
