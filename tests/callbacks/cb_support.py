"""What the callback and logger tests share: real Fashion-MNIST batches, a tiny real model, the
real Trainer with nothing attached but what a test gives, and independent observers.

The observers measure what a callback claims to report by their own means (a clock around the
batch, the losses the loss function returned, the optimizer's rate at its step), so a test can
compare the two.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from tessera.core.callback import Callback
from tessera.core.logger import LoggerDestination
from tessera.data.fashion_mnist import FashionMNIST
from tessera.data.root import find_folder
from tessera.models.module_with_loss import ModuleWithLoss
from tessera.trainer import Trainer

DATA = find_folder("fashion-mnist")
BATCH = 16
TRAIN_SAMPLES = 256  # 16 batches of 16 per epoch
EVAL_SAMPLES = 200


@functools.lru_cache(maxsize=1)
def fashion_test_split() -> FashionMNIST:
    return FashionMNIST("test", DATA)


def train_loader(samples: int = TRAIN_SAMPLES, batch_size: int = BATCH) -> DataLoader:
    """The first `samples` real images, in order (no shuffling: runs are comparable)."""
    split = fashion_test_split()
    dataset = TensorDataset(split.images[:samples], split.labels[:samples])
    return DataLoader(dataset, batch_size=batch_size)


def eval_loader() -> DataLoader:
    """The last 200 images of the split: never trained on."""
    split = fashion_test_split()
    dataset = TensorDataset(split.images[-EVAL_SAMPLES:], split.labels[-EVAL_SAMPLES:])
    return DataLoader(dataset, batch_size=100)


def accuracy() -> dict[str, Metric]:
    return {"accuracy": MulticlassAccuracy(num_classes=10, average="micro")}


class LossLog:
    """A loss function that keeps every training loss it returns (the trainer's own value)."""

    def __init__(self) -> None:
        self.losses: list[float] = []  # losses[k - 1]: batch k's loss

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(outputs, targets)
        if torch.is_grad_enabled():
            self.losses.append(float(loss.detach()))
        return loss


class Pixels(ModuleWithLoss):
    """A linear classifier over the pixels; reports FLOPs and tokens per sample when given."""

    def __init__(
        self,
        metrics: Callable[[], dict[str, Metric]] | None = accuracy,
        loss_fn: Callable[..., torch.Tensor] | None = None,
        flops_per_sample: float | None = None,
        tokens_per_sample: int = 0,
    ) -> None:
        torch.manual_seed(0)  # the same initial weights in every test
        super().__init__(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), loss_fn, metrics)
        self.flops_per_sample = flops_per_sample
        self.tokens_per_sample = tokens_per_sample

    def num_tokens(self, batch: Any) -> int:
        return self.tokens_per_sample * self.num_samples(batch)

    def flops_per_batch(self, batch: Any) -> float | None:
        if self.flops_per_sample is None:
            return None
        return self.flops_per_sample * self.num_samples(batch)


def make_trainer(
    run_dir: Path,
    max_duration: str,
    *,
    model: ModuleWithLoss | None = None,
    callbacks: Sequence[Callback] = (),
    loggers: Sequence[LoggerDestination] = (),
    train_data: Any = None,
    evaluate: bool = True,
    **options: Any,
) -> Trainer:
    """The real Trainer on CPU with only the given callbacks and loggers, no schedule, no
    checkpoints unless asked (`save_interval=`), plain SGD at 0.1, evaluating 200 real images
    (unless `evaluate=False`) every epoch unless `eval_interval=` says otherwise."""
    model = model if model is not None else Pixels()
    settings: dict[str, Any] = {
        "optimizers": torch.optim.SGD(model.parameters(), lr=0.1),
        "schedulers": [],
        "save_interval": None,
        "eval_interval": "1ep",
        "device": "cpu",
        "name": "run",
        "run_dir": run_dir,
    }
    settings.update(options)
    return Trainer(
        model,
        train_data if train_data is not None else train_loader(),
        max_duration,
        eval_data=eval_loader() if evaluate else None,
        callbacks=list(callbacks),
        loggers=list(loggers),
        **settings,
    )


class Recorder(LoggerDestination):
    """Keeps every call the loggers receive, in order: what the other loggers were sent."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int, dict[str, float]]] = []
        self.hyperparameters: list[dict[str, Any]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.records.append((step, {name: float(value) for name, value in metrics.items()}))

    def log_hyperparameters(self, hyperparameters: dict[str, Any]) -> None:
        self.hyperparameters.append(hyperparameters)

    def values(self, name: str) -> dict[int, float]:
        return {step: metrics[name] for step, metrics in self.records if name in metrics}


class BatchClock(Callback):
    """Times, on its own clock, each batch from the previous BATCH_END (or FIT_START) to its
    BATCH_END, and each evaluation; counts the samples of every batch from the batch itself."""

    def __init__(self) -> None:
        super().__init__()
        self.start = 0.0
        self.durations: list[float] = []  # per batch, evaluations included
        self.ends: list[float] = []  # seconds from FIT_START to each BATCH_END
        self.samples: list[int] = []
        self.evaluations: list[tuple[float, float]] = []  # (start, end) from FIT_START
        self._last = 0.0
        self._eval_start = 0.0

    def fit_start(self, state, logger) -> None:
        self.start = self._last = time.perf_counter()

    def batch_end(self, state, logger) -> None:
        now = time.perf_counter()
        self.durations.append(now - self._last)
        self.ends.append(now - self.start)
        self.samples.append(len(state.batch[0]))
        self._last = now

    def eval_start(self, state, logger) -> None:
        self._eval_start = time.perf_counter() - self.start

    def eval_end(self, state, logger) -> None:
        self.evaluations.append((self._eval_start, time.perf_counter() - self.start))


class Sleep(Callback):
    """Makes every batch (`after_backward`) or every evaluation (`eval_start`) slower."""

    def __init__(self, batch: float = 0.0, evaluation: float = 0.0) -> None:
        super().__init__()
        self.batch, self.evaluation = batch, evaluation

    def after_backward(self, state, logger) -> None:
        time.sleep(self.batch)

    def eval_start(self, state, logger) -> None:
        time.sleep(self.evaluation)


class RateProbe(Callback):
    """The learning rate of every group at the optimizer step of each batch: rates[k][i][j]."""

    def __init__(self) -> None:
        super().__init__()
        self.rates: dict[int, list[list[float]]] = {}

    def before_optimizer_step(self, state, logger) -> None:
        self.rates[state.timestamp.batch + 1] = [
            [float(group["lr"]) for group in optimizer.param_groups]
            for optimizer in state.optimizers
        ]


class ScriptedMetric(Metric):
    """An evaluation metric whose result is a script of the training step it is computed at,
    so a test controls the sequence a stopper sees while the Trainer runs a real evaluation."""

    full_state_update = False

    def __init__(self, script: Callable[[int], float], step: Callable[[], int]) -> None:
        super().__init__()
        self.script, self.step = script, step
        self.add_state("seen", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.seen += targets.numel()

    def compute(self) -> torch.Tensor:
        return torch.tensor(self.script(self.step()), dtype=torch.float64)


def scripted_trainer(
    run_dir: Path,
    max_duration: str,
    values: Sequence[float],
    eval_every: int,
    metric: str = "accuracy",
    **options: Any,
) -> Trainer:
    """A trainer evaluating every `eval_every` batches whose evaluation `i` (0-based) reports
    `metric` = values[i] (then the last value again)."""
    holder: list[Trainer] = []

    def script(batch: int) -> float:
        index = batch // eval_every - 1
        return float(values[min(max(index, 0), len(values) - 1)])

    def step() -> int:
        return holder[0].state.timestamp.batch

    model = Pixels(metrics=lambda: {metric: ScriptedMetric(script, step)})
    trainer = make_trainer(
        run_dir, max_duration, model=model, eval_interval=f"{eval_every}ba", **options
    )
    holder.append(trainer)
    return trainer
