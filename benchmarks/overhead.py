"""Trainer overhead: the same model, data, batch size and steps under four loops.

(a) a raw PyTorch loop, (b) Tessera, (c) Composer (`mosaicml`), (d) Lightning. Each side runs in
its own subprocess, alternating, several repeats; each records the wall-clock time between
consecutive optimizer steps and the driver reports the median per step and its ratio to the raw
loop *in the same Python environment* (Composer and Lightning run in the peers' venv, on their
torch; a raw loop runs there too, so each ratio compares like with like).

    python benchmarks/overhead.py --peer-python /tmp/peers/bin/python --repeats 3 \
        --out benchmarks/results/overhead.md

The peers' venv comes from ../shared/peers/make-peer-venv. On a GPU machine pass --device cuda.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "mlp": "784-256-10 MLP (step ~1 ms: overhead-bound)",
    "resnet": "the recipe's ResNet, width 16 (compute-bound on CPU)",
}


# -- the shared workload --------------------------------------------------------------------


def _load_file_module(name: str, relative: str):
    """Import one source file without its package (the peers' venv lacks our dependencies)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "src" / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def workload(model_name: str, batch_size: int, device: str):
    import torch
    from torch import nn

    FashionMNIST = _load_file_module("fmnist", "tessera/data/fashion_mnist.py").FashionMNIST
    ResNet = _load_file_module("resnet", "tessera/models/resnet.py").ResNet

    torch.manual_seed(0)
    data = FashionMNIST("train", os.environ.get("FASHION_MNIST_DIR"))
    dataset = torch.utils.data.TensorDataset(data.images, data.labels)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, drop_last=True
    )
    if model_name == "mlp":
        module = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    else:
        module = ResNet(width=16)
    return module.to(device), loader


def make_optimizer(module):
    import torch

    return torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)


# -- the four sides -------------------------------------------------------------------------


def run_raw(args, marks):
    import torch

    module, loader = workload(args.model, args.batch_size, args.device)
    optimizer = make_optimizer(module)
    module.train()
    step = 0
    while step < args.steps:
        for inputs, targets in loader:
            inputs, targets = inputs.to(args.device), targets.to(args.device)
            loss = torch.nn.functional.cross_entropy(module(inputs), targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            marks.append(time.perf_counter())
            step += 1
            if step >= args.steps:
                break


def run_tessera(args, marks):
    from tessera import Callback, ModuleWithLoss, Trainer

    class Marks(Callback):
        def batch_end(self, state, logger):
            marks.append(time.perf_counter())

    module, loader = workload(args.model, args.batch_size, args.device)
    trainer = Trainer(
        ModuleWithLoss(module),
        loader,
        f"{args.steps}ba",
        optimizers=make_optimizer(module),
        schedulers=[],
        callbacks=[Marks()],
        loggers=[],
        run_dir=None,
        device=args.device,
    )
    trainer.fit()


def run_composer(args, marks):
    import torch
    from composer import Callback, Trainer
    from composer.models import ComposerClassifier

    class Marks(Callback):
        def batch_end(self, state, logger):
            marks.append(time.perf_counter())

    module, loader = workload(args.model, args.batch_size, args.device)
    model = ComposerClassifier(module, num_classes=10)
    trainer = Trainer(
        model=model,
        train_dataloader=loader,
        max_duration=f"{args.steps}ba",
        optimizers=make_optimizer(model),
        callbacks=[Marks()],
        device="gpu" if args.device == "cuda" else "cpu",
        progress_bar=False,
        log_to_console=False,
        loggers=[],
        seed=0,
    )
    trainer.fit()
    del torch


def run_lightning(args, marks):
    import lightning as L
    import torch

    module, loader = workload(args.model, args.batch_size, args.device)

    class Classifier(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.module = module

        def training_step(self, batch, batch_index):
            inputs, targets = batch
            return torch.nn.functional.cross_entropy(self.module(inputs), targets)

        def configure_optimizers(self):
            return make_optimizer(self.module)

    class Marks(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_index):
            marks.append(time.perf_counter())

    trainer = L.Trainer(
        max_steps=args.steps,
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Marks()],
        num_sanity_val_steps=0,
    )
    trainer.fit(Classifier(), loader)


SIDES = {
    "raw": run_raw,
    "tessera": run_tessera,
    "composer": run_composer,
    "lightning": run_lightning,
}


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    marks: list[float] = []
    SIDES[args.worker](args, marks)
    intervals = [b - a for a, b in itertools.pairwise(marks)][args.warmup :]
    versions = {"torch": torch.__version__, "python": platform.python_version()}
    for name in ("composer", "lightning"):
        with contextlib.suppress(ImportError):
            versions[name] = __import__(name).__version__
    print(
        "RESULT "
        + json.dumps(
            {"median": statistics.median(intervals), "steps": len(intervals), "versions": versions}
        )
    )


# -- the driver -----------------------------------------------------------------------------


def run_side(python: str, side: str, args, model: str) -> dict:
    command = [
        python,
        __file__,
        "--worker",
        side,
        "--model",
        model,
        "--steps",
        str(args.steps[model]),
        "--warmup",
        str(args.warmup),
        "--batch-size",
        str(args.batch_size),
        "--device",
        args.device,
        "--threads",
        str(args.threads),
    ]
    env = {**os.environ}
    if python != sys.executable:  # the peers' venv: our package only for the errors module
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])
        )
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    line = next((x for x in result.stdout.splitlines() if x.startswith("RESULT ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"{side} failed:\n{result.stderr[-3000:]}")
    return json.loads(line.removeprefix("RESULT "))


def drive(args) -> None:
    ours, peers = sys.executable, args.peer_python
    plan = [("raw", ours, "raw (tessera env)"), ("tessera", ours, "tessera")]
    if peers:
        plan += [
            ("raw", peers, "raw (peer env)"),
            ("composer", peers, "composer"),
            ("lightning", peers, "lightning"),
        ]
    args.steps = {"mlp": args.mlp_steps, "resnet": args.resnet_steps}
    rows, versions = [], {}
    for model in args.models:
        times: dict[str, list[float]] = {label: [] for _, _, label in plan}
        for repeat in range(args.repeats):
            order = plan if repeat % 2 == 0 else list(reversed(plan))  # alternate the order
            for side, python, label in order:
                result = run_side(python, side, args, model)
                times[label].append(result["median"])
                versions[label] = result["versions"]
                print(
                    f"{model} repeat {repeat} {label}: {result['median'] * 1e3:.3f} ms/step",
                    flush=True,
                )
        medians = {label: statistics.median(values) for label, values in times.items()}
        for _, python, label in plan:
            base = medians["raw (tessera env)" if python == ours else "raw (peer env)"]
            spread = (max(times[label]) - min(times[label])) * 1e3
            rows.append((model, label, medians[label] * 1e3, spread, medians[label] / base))
    report(args, rows, versions)


def report(args, rows, versions) -> None:
    cpu = platform.processor() or platform.machine()
    lines = [
        "# Trainer overhead: raw PyTorch vs Tessera vs Composer vs Lightning",
        "",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {args.machine or cpu}, {os.cpu_count()} cores, device {args.device}, "
        f"torch threads {args.threads}",
        f"- command: `python benchmarks/overhead.py {' '.join(sys.argv[1:])}`",
        f"- workload: Fashion-MNIST, batch {args.batch_size}, SGD momentum; models: "
        + "; ".join(f"{k}: {v}" for k, v in MODELS.items() if k in args.models),
        f"- steps per run: mlp {args.mlp_steps}, resnet {args.resnet_steps} (first "
        f"{args.warmup} intervals dropped); {args.repeats} repeats, sides alternating",
        "- versions: "
        + "; ".join(
            f"{label}: " + ", ".join(f"{k} {v}" for k, v in info.items())
            for label, info in versions.items()
        ),
        "",
        "Median time per step (median over repeats of each run's median), spread = max - min",
        "over repeats, and the ratio to the raw loop run in the same environment.",
        "",
        "| model | loop | ms/step | spread (ms) | ratio to raw |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for model, label, ms, spread, ratio in rows:
        lines.append(f"| {model} | {label} | {ms:.3f} | {spread:.3f} | {ratio:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(
            text
            if not Path(args.out).exists() or not args.append
            else Path(args.out).read_text() + "\n" + text
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=sorted(SIDES))
    parser.add_argument("--model", default="mlp", choices=sorted(MODELS))
    parser.add_argument("--models", nargs="+", default=["mlp", "resnet"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--mlp-steps", type=int, default=400)
    parser.add_argument("--resnet-steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peer-python", help="python of the peers' venv (Composer, Lightning)")
    parser.add_argument("--machine", help="machine description for the report")
    parser.add_argument("--out", help="write the markdown table here")
    parser.add_argument("--append", action="store_true", help="append to --out")
    args = parser.parse_args()
    if args.worker:
        worker(args)
    else:
        drive(args)


if __name__ == "__main__":
    main()
