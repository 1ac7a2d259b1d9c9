"""Host time the reporting callbacks and loggers add per batch, measured by the engine's profiler.

Trains a small linear classifier on real Fashion-MNIST images with the real Trainer, every
callback and logger of `tessera.callbacks` / `tessera.loggers` attached (log_interval 10ba),
and `profile=True`, which times every hook at every event. Prints, per callback, the total
seconds and the microseconds it adds per trained batch, next to the time of a whole batch.
Then times each hook alone (timeit): on a batch that is not a log step, and on a log step.

    python benchmarks/callbacks_overhead.py [--batches 400] [--log-interval 10]
    python benchmarks/callbacks_overhead.py --smoke   # a few seconds: checks that it runs
"""

from __future__ import annotations

import argparse
import gzip
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tessera.callbacks import build_callbacks
from tessera.loggers import build_loggers
from tessera.models.module_with_loss import ModuleWithLoss
from tessera.trainer import Trainer

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fashion-mnist"


def load(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    with gzip.open(DATA / "train-images-idx3-ubyte.gz") as file:
        images = np.frombuffer(file.read(16 + count * 784), np.uint8, offset=16)
    with gzip.open(DATA / "train-labels-idx1-ubyte.gz") as file:
        labels = np.frombuffer(file.read(8 + count), np.uint8, offset=8)
    x = torch.from_numpy(images.copy()).reshape(count, 784).float() / 255.0
    return x, torch.from_numpy(labels.copy()).long()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--with-tensorboard", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="20 batches, few repeats")
    args = parser.parse_args()
    repeats = 2000
    if args.smoke:
        args.batches, repeats = 20, 50

    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(*load(args.batches * 64)), batch_size=64)
    model = ModuleWithLoss(nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)))
    run_dir = Path(tempfile.mkdtemp(prefix="tessera-cb-bench-"))
    every = {"log_interval": args.log_interval}
    callbacks = build_callbacks(
        {"speed_monitor": every, "lr_monitor": every, "memory_monitor": every}
    )
    logger_spec = {"progress": {"mode": "lines", **every}, "jsonl": None}
    if args.with_tensorboard:
        logger_spec["tensorboard"] = None
    loggers = build_loggers(logger_spec, run_dir)  # metrics.jsonl in the temporary folder
    trainer = Trainer(
        model,
        loader,
        f"{args.batches}ba",
        optimizers=torch.optim.SGD(model.parameters(), lr=0.05),
        schedulers=[],  # a constant rate: the reporters are what is measured
        callbacks=callbacks,
        loggers=loggers,
        device="cpu",
        profile=True,
        run_dir=None,  # no checkpoints or final export inside the timed fit()
    )
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start

    per_callback: dict[str, float] = defaultdict(float)
    for (_event, name), (total, _calls) in trainer.engine.timings.items():
        per_callback[name] += total
    batches = trainer.state.timestamp.batch
    print(f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}")
    print(f"{batches} batches of 64 in {seconds:.2f} s: {1e6 * seconds / batches:,.0f} us/batch")
    print(f"{'hook owner':<22}{'total s':>10}{'us/batch':>12}{'% of batch':>12}")
    total_hooks = 0.0
    for name, total in sorted(per_callback.items(), key=lambda item: -item[1]):
        total_hooks += total
        share = 100 * total / seconds
        print(f"{name:<22}{total:>10.4f}{1e6 * total / batches:>12.1f}{share:>11.2f}%")
    print(
        f"{'all hooks':<22}{total_hooks:>10.4f}{1e6 * total_hooks / batches:>12.1f}"
        f"{100 * total_hooks / seconds:>11.2f}%"
    )
    hook_costs(run_dir, repeats)


def hook_costs(run_dir: Path, repeats: int = 2000) -> None:
    """Microseconds per call of each reporter's batch hooks, outside a training run."""
    import io
    import timeit

    from rich.console import Console

    from tessera.callbacks.lr_monitor import LRMonitor
    from tessera.callbacks.memory_monitor import MemoryMonitor
    from tessera.callbacks.speed_monitor import SpeedMonitor
    from tessera.core.logger import Logger
    from tessera.core.state import State
    from tessera.core.time import Time
    from tessera.loggers.jsonl import JSONLLogger
    from tessera.loggers.progress import ProgressBarLogger

    model = ModuleWithLoss(nn.Linear(784, 10))
    print(f"\n{'hook (alone)':<22}{'us, plain batch':>16}{'us, log step':>14}")
    for make in (SpeedMonitor, LRMonitor, MemoryMonitor, ProgressBarLogger):
        cost = []
        for interval in (10**9, 1):
            state = State(
                model=model,
                max_duration=Time.parse("1000000000ba"),
                device=torch.device("cpu"),
                optimizers=[torch.optim.SGD(model.parameters(), lr=0.1)],
                batch=(torch.zeros(64, 784), torch.zeros(64, dtype=torch.long)),
                batch_loss=torch.tensor(0.5),
                last_batch_samples=64,
            )
            extra = {"mode": "lines"} if make is ProgressBarLogger else {}
            reporter = make(log_interval=interval, **extra)
            if make is ProgressBarLogger:
                reporter.console = Console(file=io.StringIO(), highlight=False, soft_wrap=True)
            sink = JSONLLogger(path=run_dir / f"micro-{make.__name__}.jsonl")
            logger = Logger([sink])
            for hook in ("init", "fit_start"):
                if hasattr(reporter, hook):
                    getattr(reporter, hook)(state, logger)

            def one_batch(state=state, reporter=reporter, logger=logger) -> None:
                if hasattr(reporter, "batch_start"):
                    reporter.batch_start(state, logger)
                state.timestamp = state.timestamp.after_batch(64)
                reporter.batch_end(state, logger)

            cost.append(1e6 * timeit.timeit(one_batch, number=repeats) / repeats)
        print(f"{make.__name__:<22}{cost[0]:>16.1f}{cost[1]:>14.1f}")


if __name__ == "__main__":
    main()
