"""Fixtures for the method tests: real Fashion-MNIST images, tiny models, a trainer builder and
a probe that records what the trainer's state looked like at chosen events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from tessera.core.callback import Callback
from tessera.core.logger import LoggerDestination
from tessera.data.fashion_mnist import FashionMNIST, collate_ready_batch
from tessera.data.root import find_folder
from tessera.data.sampler import make_dataloader
from tessera.models import ModuleWithLoss
from tessera.models.resnet import ResNet

DATA = find_folder("fashion-mnist")
BATCH = 16  # training batch size of `make_trainer`
# `make_trainer` options of a resume test: a checkpoint after every batch, all kept, resumed
# only from `load_path`
EVERY_BATCH = {"save_interval": "1ba", "keep_last": None, "autoresume": False}


class FirstImages(torch.utils.data.Dataset):
    def __init__(self, base: FashionMNIST, start: int, count: int) -> None:
        self.images = base.images[start : start + count]
        self.labels = base.labels[start : start + count]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices):
        index = torch.as_tensor(indices)
        return self.images[index], self.labels[index]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread for these modules (restored after each): the models are tiny, and
    on a shared 2-core machine a second thread makes each step several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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

    def build(batches: int = 3, batch_size: int = BATCH, shuffle: bool = True):
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
    """A `tessera.Trainer` over the tiny ResNet (or `model`) with the given algorithms.

    No run folder, no default monitors or loggers and a constant learning rate unless a test
    asks for them; `evaluate=True` adds 64 held-out images as eval data; `shuffle=False`
    keeps the training batches in data-set order (batch i is images 16*i to 16*i + 15);
    `train_data` replaces the Fashion-MNIST batches (e.g. by `coded_images` batches).
    """
    from tessera import Trainer

    def build(
        algorithms=(),
        model=None,
        batches=3,
        max_duration="1ep",
        lr=0.05,
        optimizer=None,
        evaluate=False,
        shuffle=True,
        train_data=None,
        **kwargs,
    ):
        model = model if model is not None else tiny_resnet()
        train, evaluation = loaders(batches, shuffle=shuffle)
        train = train if train_data is None else train_data
        if optimizer is None:
            optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        options = {
            "eval_data": evaluation if evaluate else None,
            "schedulers": [],
            "callbacks": [],
            "loggers": [],
            "run_dir": None,
            "device": "cpu",
        }
        options.update(kwargs)
        return Trainer(
            model, train, max_duration, optimizers=optimizer, algorithms=list(algorithms), **options
        )

    return build


class Probe(Callback):
    """Records `record(state)` at each named event: `probe.seen["before_forward"]` is a list.

    Callbacks run after the algorithms at every event, so a probe sees what a method did."""

    def __init__(self, **records: Callable[[Any], Any]) -> None:
        super().__init__()
        self.seen: dict[str, list[Any]] = {event: [] for event in records}
        for event, record in records.items():
            setattr(self, event, self._recorder(self.seen[event], record))

    @staticmethod
    def _recorder(into: list[Any], record: Callable[[Any], Any]):
        def hook(state, logger) -> None:
            into.append(record(state))

        return hook


class Metrics(LoggerDestination):
    """Keeps every logged metric: `metrics.values("mixup/lambda")` in the order logged."""

    def __init__(self) -> None:
        super().__init__()
        self.logged: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.logged.append((step, dict(metrics)))

    def values(self, key: str) -> list[float]:
        return [metrics[key] for _, metrics in self.logged if key in metrics]


def coded_images(count: int = BATCH, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, 28, 28) images whose every value says where it came from: image i, row r and
    column c hold `i + (28 r + c) / 1000`; and random labels."""
    pixels = torch.arange(28 * 28, dtype=torch.float64).view(1, 1, 28, 28) / 1000
    images = (torch.arange(count, dtype=torch.float64).view(-1, 1, 1, 1) + pixels).float()
    labels = torch.randint(0, 10, (count,), generator=torch.Generator().manual_seed(seed))
    return images, labels


def decode(value: torch.Tensor) -> tuple[int, int, int]:
    """(image, row, column) of a value of `coded_images`."""
    image = int(torch.floor(value + 1e-4))
    pixel = round((float(value) - image) * 1000)
    return image, pixel // 28, pixel % 28


def inputs_of(state) -> torch.Tensor:
    """A detached copy of the current batch's inputs."""
    return state.batch[0].detach().clone()


def weights_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's floating-point parameters, by name."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.is_floating_point()}
