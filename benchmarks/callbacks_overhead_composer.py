"""The peer side of callbacks_overhead.py: the same run under Composer, its hooks timed.

Run with the peer environment (../shared/peers/make-peer-venv), never Tessera's:

    /tmp/tessera-peers/bin/python benchmarks/callbacks_overhead_composer.py [--batches 400]

Same model (784-256-10 MLP), data (the first 64 x batches Fashion-MNIST training images),
batch size (64) and optimizer (SGD 0.05) as the Tessera side, with Composer's equivalents of
Tessera's reporters: SpeedMonitor (window 20), LRMonitor, MemoryMonitor, its progress bar and
a FileLogger (metrics to a text file). Every `run_event` of each callback and logger is timed
(its own logging calls included), which is what Tessera's engine profiler measures.
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import composer
import numpy as np
import torch
from composer import Trainer
from composer.callbacks import LRMonitor, MemoryMonitor, SpeedMonitor
from composer.loggers import FileLogger
from composer.models import ComposerClassifier
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fashion-mnist"


def load(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    with gzip.open(DATA / "train-images-idx3-ubyte.gz") as file:
        images = np.frombuffer(file.read(16 + count * 784), np.uint8, offset=16)
    with gzip.open(DATA / "train-labels-idx1-ubyte.gz") as file:
        labels = np.frombuffer(file.read(8 + count), np.uint8, offset=8)
    x = torch.from_numpy(images.copy()).reshape(count, 784).float() / 255.0
    return x, torch.from_numpy(labels.copy()).long()


def timed(obj: object, totals: dict[str, float]) -> None:
    """Replace obj.run_event with a version that adds its wall time to totals[class name]."""
    inner = obj.run_event
    name = type(obj).__name__

    def run_event(event, state, logger):
        start = time.perf_counter()
        inner(event, state, logger)
        totals[name] += time.perf_counter() - start

    obj.run_event = run_event  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=400)
    args = parser.parse_args()

    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(*load(args.batches * 64)), batch_size=64)
    module = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    model = ComposerClassifier(module=module, num_classes=10)
    run_dir = Path(tempfile.mkdtemp(prefix="composer-cb-bench-"))
    file_logger = FileLogger(
        filename=str(run_dir / "log.txt"), capture_stdout=False, capture_stderr=False
    )
    trainer = Trainer(
        model=model,
        train_dataloader=loader,
        max_duration=f"{args.batches}ba",
        optimizers=torch.optim.SGD(model.parameters(), lr=0.05),
        callbacks=[SpeedMonitor(window_size=20), LRMonitor(), MemoryMonitor()],
        loggers=[file_logger],
        progress_bar=True,
        device="cpu",
        save_folder=None,
    )
    totals: dict[str, float] = defaultdict(float)
    for obj in [*trainer.state.callbacks]:
        timed(obj, totals)
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    batches = int(trainer.state.timestamp.batch)
    print(f"\ncomposer {composer.__version__}, torch {torch.__version__}")
    print(f"{batches} batches of 64 in {seconds:.2f} s: {1e6 * seconds / batches:,.0f} us/batch")
    print(f"{'hook owner':<22}{'total s':>10}{'us/batch':>12}{'% of batch':>12}")
    total_hooks = 0.0
    for name, total in sorted(totals.items(), key=lambda item: -item[1]):
        total_hooks += total
        share = 100 * total / seconds
        print(f"{name:<22}{total:>10.4f}{1e6 * total / batches:>12.1f}{share:>11.2f}%")
    print(
        f"{'all hooks':<22}{total_hooks:>10.4f}{1e6 * total_hooks / batches:>12.1f}"
        f"{100 * total_hooks / seconds:>11.2f}%"
    )


if __name__ == "__main__":
    main()
