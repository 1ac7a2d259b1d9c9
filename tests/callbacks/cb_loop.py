"""A short training loop that fires the real events through the real Engine, the way the
trainer does, on real Fashion-MNIST images. Used by the callback and logger tests."""

from __future__ import annotations

import functools
import gzip
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from tessera.core.callback import Callback
from tessera.core.engine import Engine
from tessera.core.event import Event
from tessera.core.logger import Logger, LoggerDestination
from tessera.core.model import TrainableModel
from tessera.core.state import State
from tessera.core.time import Time

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "fashion-mnist"


@functools.lru_cache(maxsize=4)
def fashion_mnist(count: int, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` images (uint8, N x 28 x 28) and labels of a Fashion-MNIST split."""
    prefix = "train" if split == "train" else "t10k"
    with gzip.open(DATA / f"{prefix}-images-idx3-ubyte.gz") as file:
        images = np.frombuffer(file.read(16 + count * 784), dtype=np.uint8, offset=16)
    with gzip.open(DATA / f"{prefix}-labels-idx1-ubyte.gz") as file:
        labels = np.frombuffer(file.read(8 + count), dtype=np.uint8, offset=8)
    return (
        torch.from_numpy(images.copy()).reshape(count, 28, 28),
        torch.from_numpy(labels.copy()).long(),
    )


class TinyClassifier(TrainableModel):
    """A linear classifier over pixels; reports `flops` per sample when given."""

    def __init__(self, flops_per_sample: float | None = None, tokens_per_sample: int = 0):
        super().__init__()
        self.net = nn.Linear(784, 10)
        self.flops_per_sample = flops_per_sample
        self.tokens_per_sample = tokens_per_sample

    def forward(self, batch: Any) -> torch.Tensor:
        return self.net(batch[0].flatten(1).float() / 255.0)

    def loss(self, outputs: torch.Tensor, batch: Any) -> torch.Tensor:
        return F.cross_entropy(outputs, batch[1])

    def metrics(self, train: bool = False) -> dict[str, Any]:
        return {"accuracy": MulticlassAccuracy(num_classes=10, average="micro")}

    def num_tokens(self, batch: Any) -> int:
        return self.tokens_per_sample * self.num_samples(batch)

    def flops_per_batch(self, batch: Any) -> float | None:
        if self.flops_per_sample is None:
            return None
        return self.flops_per_sample * self.num_samples(batch)


def make_state(
    max_duration: str = "20ba",
    batch_size: int = 16,
    samples: int = 320,
    model: TrainableModel | None = None,
    optimizers: Sequence[torch.optim.Optimizer] | None = None,
    rank: int = 0,
) -> State:
    torch.manual_seed(0)  # the same initial weights in every test
    images, labels = fashion_mnist(samples)
    loader = DataLoader(TensorDataset(images, labels), batch_size=batch_size)
    model = model or TinyClassifier()
    optimizers = optimizers or [torch.optim.SGD(model.parameters(), lr=0.1)]
    state = State(
        model=model,
        max_duration=Time.parse(max_duration),
        device=torch.device("cpu"),
        optimizers=list(optimizers),
        train_dataloader=loader,
        eval_dataloaders={"eval": DataLoader(TensorDataset(*fashion_mnist(200, "test")), 100)},
        batches_per_epoch=len(loader),
        samples_per_batch=batch_size,
        rank=rank,
    )
    state.eval_metrics = {"eval": model.metrics()}
    return state


class Loop:
    """Drives `state` through fit like the trainer: events, forward/backward, optimizer step.

    eval_every: evaluate every N batches. scripted_eval: instead of measuring accuracy, take
    the eval results from this function of the evaluation count (to test decisions on known
    sequences). batch_sleep: extra seconds spent in each batch (a controlled slow step).
    """

    def __init__(
        self,
        state: State,
        callbacks: Sequence[Callback] = (),
        loggers: Sequence[LoggerDestination] = (),
        eval_every: int | None = None,
        scripted_eval: Callable[[int], dict[str, dict[str, float]]] | None = None,
        batch_sleep: float = 0.0,
        eval_sleep: float = 0.0,
    ) -> None:
        self.state = state
        self.logger = Logger(loggers)
        state.callbacks = [*callbacks, *loggers]
        self.engine = Engine(state, self.logger, callbacks=state.callbacks)
        self.eval_every = eval_every
        self.scripted_eval = scripted_eval
        self.batch_sleep = batch_sleep
        self.eval_sleep = eval_sleep
        self.evaluations = 0
        if scripted_eval is not None:  # the run declares the metrics the script produces
            for label, values in scripted_eval(0).items():
                declared = state.eval_metrics.setdefault(label, {})
                for name in values:
                    declared.setdefault(name, None)
        self.losses: dict[int, float] = {}  # batch -> loss, as the trainer computed it
        self.lrs: dict[int, float] = {}  # batch -> lr the batch was trained with
        self.engine.run_event(Event.INIT)

    def fit(self) -> None:
        state, engine = self.state, self.engine
        try:
            engine.run_event(Event.FIT_START)
            while not state.is_done() and state.stop_reason is None:
                self._epoch()
            engine.run_event(Event.FIT_END)
        finally:
            engine.close()

    def _epoch(self) -> None:
        state, engine = self.state, self.engine
        engine.run_event(Event.EPOCH_START)
        skip = state.timestamp.batch_in_epoch
        for index, batch in enumerate(state.train_dataloader):  # type: ignore[arg-type]
            if index < skip:
                continue
            self._batch(batch)
            # As the trainer: a run that ends with its epoch still ends the epoch properly.
            if state.stop_reason is not None or (state.is_done() and not state.epoch_complete):
                return
        state.timestamp = state.timestamp.after_epoch()
        engine.run_event(Event.EPOCH_END)
        engine.run_event(Event.EPOCH_CHECKPOINT)

    def _batch(self, batch: Any) -> None:
        state, engine = self.state, self.engine
        model = state.unwrapped_model
        state.batch = batch
        engine.run_event(Event.BATCH_START)
        engine.run_event(Event.AFTER_DATALOADER)
        self.lrs[state.timestamp.batch + 1] = state.optimizers[0].param_groups[0]["lr"]
        engine.run_event(Event.BEFORE_FORWARD)
        state.outputs = model(state.batch)
        engine.run_event(Event.AFTER_FORWARD)
        engine.run_event(Event.BEFORE_LOSS)
        state.loss = model.loss(state.outputs, state.batch)
        engine.run_event(Event.AFTER_LOSS)
        engine.run_event(Event.BEFORE_BACKWARD)
        state.loss.backward()
        engine.run_event(Event.AFTER_BACKWARD)
        state.batch_loss = state.loss.detach()
        if self.batch_sleep:
            time.sleep(self.batch_sleep)
        engine.run_event(Event.BEFORE_OPTIMIZER_STEP)
        for optimizer in state.optimizers:
            optimizer.step()
        engine.run_event(Event.AFTER_OPTIMIZER_STEP)
        for scheduler in state.schedulers:
            scheduler.step()
        for optimizer in state.optimizers:
            optimizer.zero_grad(set_to_none=True)
        state.last_batch_samples = model.num_samples(batch)
        state.last_batch_tokens = model.num_tokens(batch)
        state.timestamp = state.timestamp.after_batch(
            state.last_batch_samples, state.last_batch_tokens
        )
        self.losses[state.timestamp.batch] = float(state.batch_loss)
        engine.run_event(Event.BATCH_END)
        if self.eval_every and state.timestamp.batch % self.eval_every == 0:
            self.evaluate()
        engine.run_event(Event.BATCH_CHECKPOINT)

    def evaluate(self) -> None:
        state, engine = self.state, self.engine
        engine.run_event(Event.EVAL_START)
        if self.eval_sleep:
            time.sleep(self.eval_sleep)
        if self.scripted_eval is not None:
            results = self.scripted_eval(self.evaluations)
        else:
            model = state.unwrapped_model
            results = {}
            for label, loader in state.eval_dataloaders.items():
                metrics = state.eval_metrics[label]
                for metric in metrics.values():
                    metric.reset()
                with torch.no_grad():
                    for batch in loader:
                        outputs = model.eval_forward(batch)
                        for metric in metrics.values():
                            model.update_metric(batch, outputs, metric)
                results[label] = {name: float(m.compute()) for name, m in metrics.items()}
        self.evaluations += 1
        state.eval_results = results
        self.logger.log_metrics(
            {
                f"metrics/{label}/{name}": value
                for label, values in results.items()
                for name, value in values.items()
            },
            step=state.timestamp.batch,
        )
        engine.run_event(Event.EVAL_END)


class Recorder(LoggerDestination):
    """Keeps every logged metric: (step, name) -> value."""

    def __init__(self) -> None:
        self.records: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.records.append((step, dict(metrics)))

    def values(self, name: str) -> dict[int, float]:
        return {step: m[name] for step, m in self.records if name in m}
