"""The callbacks and loggers inside the real Trainer: built from YAML names, through a resume."""

from __future__ import annotations

import torch
from cb_loop import fashion_mnist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from tessera.callbacks import build_callbacks
from tessera.core.trainer import Trainer
from tessera.loggers import build_loggers
from tessera.loggers.jsonl import read_jsonl
from tessera.models.module_with_loss import ModuleWithLoss


class Pixels(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.flatten(1).float() / 255.0)


def make_trainer(run_dir, callbacks_spec, max_duration="8ba", **kwargs):
    torch.manual_seed(0)
    train = DataLoader(TensorDataset(*fashion_mnist(256)), batch_size=32)
    evaluation = DataLoader(TensorDataset(*fashion_mnist(200, "test")), batch_size=100)
    model = ModuleWithLoss(
        Pixels(), metrics=lambda: {"accuracy": MulticlassAccuracy(10, average="micro")}
    )
    loggers = build_loggers({"progress": {"mode": "lines"}, "jsonl": None}, run_dir, 2)
    return Trainer(
        model,
        train,
        max_duration,
        optimizers=torch.optim.SGD(model.parameters(), lr=0.1),
        eval_dataloaders=evaluation,
        eval_interval="4ba",
        callbacks=build_callbacks(callbacks_spec, log_interval=2),
        loggers=loggers,
        device="cpu",
        run_dir=run_dir,
        **kwargs,
    )


def test_trainer_run_logs_everything_and_stops_at_the_threshold(tmp_path, capsys):
    spec = {
        "speed_monitor": {"window": 2},
        "lr_monitor": None,
        "memory_monitor": None,
        # Chance is 10%: a linear model passes 20% within the first evaluations.
        "threshold_stopping": {"monitor": "metrics/eval/accuracy", "threshold": 0.2},
    }
    trainer = make_trainer(tmp_path, spec, max_duration="40ba")
    trainer.fit()
    state = trainer.state
    threshold = trainer.state.callbacks[3]
    assert threshold.reached_at is not None
    assert state.timestamp.batch == threshold.reached_at["batch"] < 40
    assert state.timestamp.batch % 4 == 0  # stopped right after an evaluation
    assert state.eval_results["eval"]["accuracy"] >= 0.2

    records = list(read_jsonl(tmp_path / "metrics.jsonl"))
    steps_with = lambda name: [r["step"] for r in records if name in r]  # noqa: E731
    last = state.timestamp.batch
    assert steps_with("loss/train") == list(range(2, last + 1, 2))
    assert steps_with("throughput/samples_per_sec") == list(range(2, last + 1, 2))
    assert steps_with("lr/group0") == list(range(2, last + 1, 2))
    assert steps_with("memory/peak_rss_gib") == list(range(2, last + 1, 2))
    assert steps_with("metrics/eval/accuracy") == list(range(4, last + 1, 4))
    assert steps_with("threshold/batch") == [last]
    assert all(r["lr/group0"] == 0.1 for r in records if "lr/group0" in r)

    out = capsys.readouterr().out
    assert f"[batch {last}/40 " in out and "samples/s" in out
    assert f"eval at batch {last}: accuracy" in out
    assert "training stopped (threshold reached" in out


def test_resumed_run_restores_callback_state_and_continues_the_metrics_file(tmp_path):
    spec = {
        "early_stopping": {"monitor": "eval/accuracy", "mode": "max", "patience": 5},
        "speed_monitor": None,
    }
    first = make_trainer(tmp_path, spec, "4ba", save_folder=tmp_path / "ckpt", save_interval="4ba")
    first.fit()
    stopper = first.state.callbacks[0]
    best = stopper.best
    assert best is not None
    train_seconds = first.state.callbacks[1].train_seconds

    second = make_trainer(
        tmp_path, spec, save_folder=tmp_path / "ckpt", save_interval="4ba", autoresume=True
    )
    assert second.resumed_from is not None
    resumed_stopper, resumed_speed = second.state.callbacks[0], second.state.callbacks[1]
    assert resumed_stopper.best == best
    assert resumed_speed.train_seconds == train_seconds
    second.fit()

    records = list(read_jsonl(tmp_path / "metrics.jsonl"))
    markers = [i for i, r in enumerate(records) if "resumed_at" in r]
    assert len(markers) == 1 and records[markers[0]]["resumed_at"] == 4
    after = [r["step"] for r in records[markers[0] + 1 :] if "loss/train" in r]
    assert after == [6, 8]
    assert second.state.callbacks[1].train_seconds > train_seconds
