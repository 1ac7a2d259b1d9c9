"""The loss guard on a real training run (Fashion-MNIST, a small MLP): an injected loss spike
has its optimizer step skipped; a run of injected NaNs triggers a rollback to the last good
checkpoint with the learning rate lowered; the run finishes with a finite loss."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from tessera.callbacks.loss_guard import LossGuard
from tessera.core.algorithm import Algorithm
from tessera.core.callback import Callback
from tessera.core.event import Event
from tessera.core.state import State
from tessera.data import fashion_mnist
from tessera.data.sampler import make_dataloader
from tessera.models import ModuleWithLoss
from tessera.trainer import Trainer


class InjectLoss(Algorithm):
    """Test hook: multiply the loss of the given batches (0-based) by a factor (NaN too)."""

    def __init__(self, factors: dict[int, float]) -> None:
        super().__init__()
        self.factors = factors

    def match(self, event: Event, state: State) -> bool:
        return event == Event.AFTER_LOSS and state.timestamp.batch in self.factors

    def apply(self, event: Event, state: State, logger) -> None:
        state.loss = state.loss * self.factors[state.timestamp.batch]


class StepWatch(Callback):
    """Which batches changed the weights (an optimizer step happened)."""

    def __init__(self) -> None:
        super().__init__()
        self.stepped: dict[int, bool] = {}
        self.losses: dict[int, float] = {}

    def before_optimizer_step(self, state, logger) -> None:
        self._before = [p.detach().clone() for p in state.unwrapped_model.parameters()]

    def after_optimizer_step(self, state, logger) -> None:
        after = list(state.unwrapped_model.parameters())
        changed = any(not torch.equal(a, b) for a, b in zip(self._before, after))
        self.stepped[state.timestamp.batch] = changed
        self.losses[state.timestamp.batch] = float(state.batch_loss)


def _trainer(fashion_mnist_dir, tmp_path, factors, guard, watch, **kwargs):
    data = fashion_mnist.FashionMNIST("test", fashion_mnist_dir)
    torch.manual_seed(0)
    model = ModuleWithLoss(nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(),
                                         nn.Linear(32, 10)))  # fmt: skip
    collate = fashion_mnist.collate_ready_batch
    loader = make_dataloader(data, 32, shuffle=True, seed=0, collate_fn=collate)
    return Trainer(
        model, loader, kwargs.pop("max_duration", "50ba"),
        optimizers=torch.optim.SGD(model.parameters(), lr=0.1), schedulers={"name": "constant"},
        algorithms=[InjectLoss(factors)], callbacks=[guard, watch], loggers=None,
        device="cpu", run_dir=tmp_path, name="guarded", eval_interval="100ep", **kwargs,
    )  # fmt: skip


def test_a_spike_is_skipped_and_training_goes_on(tmp_path, fashion_mnist_dir):
    guard, watch = LossGuard(warmup=5), StepWatch()
    trainer = _trainer(fashion_mnist_dir, tmp_path, {20: 50.0}, guard, watch, save_interval=None)
    trainer.fit()
    assert watch.stepped[20] is False  # the spiked batch did not move the weights
    assert all(watch.stepped[batch] for batch in range(50) if batch != 20)
    assert (guard.skipped, guard.rollbacks) == (1, 0)
    assert trainer.state.timestamp.batch == 50 and math.isfinite(watch.losses[49])
    records = [json.loads(line) for line in (tmp_path / "guarded" / "metrics.jsonl").open()]
    skipped = [r for r in records if "guard/skipped_steps" in r]
    assert [(r["step"], r["guard/skipped_steps"]) for r in skipped] == [(20, 1)]


def test_a_run_of_nans_rolls_back_with_a_lower_learning_rate(tmp_path, fashion_mnist_dir):
    guard, watch = LossGuard(warmup=5, max_bad_in_a_row=3, lr_factor=0.5), StepWatch()
    nans = {30: math.nan, 31: math.nan, 32: math.nan}
    trainer = _trainer(fashion_mnist_dir, tmp_path, nans, guard, watch, save_interval="5ba",
                       keep_last=None)  # fmt: skip
    trainer.fit()
    assert [watch.stepped[batch] for batch in (30, 31, 32)] == [False, False, False]
    assert (guard.skipped, guard.rollbacks) == (3, 1)
    assert trainer.state.timestamp.batch == 50  # the clock and the data went on past them
    assert trainer.state.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.05)
    weights = torch.cat([p.detach().flatten() for p in trainer.state.unwrapped_model.parameters()])
    assert torch.isfinite(weights).all() and math.isfinite(watch.losses[49])
    records = [json.loads(line) for line in (tmp_path / "guarded" / "metrics.jsonl").open()]
    rollbacks = [r for r in records if "rollback/count" in r]
    assert [(r["step"], r["rollback/to_batch"]) for r in rollbacks] == [(33, 30)]
    assert max(r.get("guard/rollbacks", 0) for r in records) == 1
