"""Data-parallel scaling of Tessera's trainer: throughput, MFU, memory and checkpoint times.

Two workloads, each run through the real builder and Trainer on 1, 2, 4, ... GPUs (as many as
the machine has, up to --max-gpus), every size started by torchrun:

- resnet: the Fashion-MNIST ResNet recipe's model (width 64, 3x2 blocks), DDP, amp_bf16,
  512 images per GPU (weak scaling: the global batch grows with the GPUs).
- gpt: a GPT-2-small-shaped model (12 layers, d=768, 1024 tokens, char vocabulary) on Tiny
  Shakespeare, FSDP2 (full sharding, bf16 params, fp32 reduce), 8 sequences per GPU.

    python benchmarks/scaling.py --data DIR --out results.json

(DIR holds fashion-mnist/ and tinyshakespeare/; --smoke shrinks both models for a CPU check.)

Scaling efficiency = (throughput on N GPUs) / (N x throughput on 1 GPU). Checkpoint times:
DDP saves rank 0's full single-file checkpoint, FSDP every rank's shards through DCP.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def recipe(workload: str, data: Path, run_dir: Path, steps: int, nproc: int) -> dict[str, Any]:
    common = {
        "name": f"{workload}-{nproc}",
        "run_dir": str(run_dir),
        "seed": 0,
        "max_duration": f"{steps}ba",
        "eval_interval": "100000ba",
        "save_interval": None,
        "autoresume": False,
        "callbacks": {},
        "loggers": {},
        "scheduler": {"name": "constant"},
    }
    if workload == "resnet":
        return {
            **common,
            "precision": "amp_bf16",
            "model": {"name": "resnet", "width": 64, "blocks_per_stage": [2, 2, 2]},
            "data": {
                "name": "fashion_mnist",
                "path": str(data / "fashion-mnist"),
                "batch_size": 512 * nproc,
                "eval_batch_size": 1000,
            },
            "optimizer": {"name": "sgdw", "lr": 0.1, "momentum": 0.9},
            "parallelism": {"strategy": "ddp"},
        }
    text = data / "tinyshakespeare" / "input.txt"
    return {
        **common,
        "precision": "fp32",  # FSDP's mixed-precision policy computes in bf16
        "model": {
            "name": "gpt",
            "tokenizer": f"char:{text}",
            "max_seq_len": 1024,
            "n_layer": 12,
            "n_head": 12,
            "d_model": 768,
        },
        "data": {
            "name": "text",
            "text": str(text),
            "tokenizer": f"char:{text}",
            "seq_len": 1024,
            "batch_size": 8 * nproc,
            "eval_batch_size": 8,
            "eval_max_sequences": 8,
        },
        "optimizer": {"name": "adamw", "lr": 3e-4, "weight_decay": 0.1},
        "parallelism": {"strategy": "fsdp", "param_dtype": "bfloat16", "reduce_dtype": "float32"},
    }


def worker(args: argparse.Namespace) -> None:
    """One rank: build the run, time the steps after warm-up, then a save and a load."""
    import torch

    from tessera.callbacks.peak_flops import peak_flops_per_second
    from tessera.config.build import build_trainer
    from tessera.config.load import validate_config
    from tessera.core import world
    from tessera.core.callback import Callback
    from tessera.core.engine import Engine
    from tessera.core.precision import Precision

    nproc = int(os.environ.get("WORLD_SIZE", 1))
    run_dir = Path(args.run_dir)
    raw = recipe(args.workload, Path(args.data), run_dir, args.steps, nproc)
    if args.smoke:  # tiny shapes, CPU: checks the script, measures nothing
        raw.update(device="cpu", precision="fp32")
        raw["model"].update(
            {"width": 8}
            if args.workload == "resnet"
            else {"n_layer": 2, "d_model": 64, "n_head": 4}
        )
        raw["data"]["batch_size"] = 8 * nproc
        if args.workload == "gpt":
            raw["data"]["seq_len"] = raw["model"]["max_seq_len"] = 64
            raw["parallelism"] = {"strategy": "fsdp"}
    config = validate_config(raw)
    trainer = build_trainer(config)
    state = trainer.state
    marks: dict[int, float] = {}

    class Clock(Callback):
        def batch_end(self, state: Any, logger: Any) -> None:
            if state.timestamp.batch in (args.warmup, args.steps):
                synchronize()
                marks[state.timestamp.batch] = time.perf_counter()

    # A fresh engine that also fires the clock (INIT has run; the state is untouched).
    trainer.engine = Engine(state, trainer.logger, state.algorithms, [Clock(), *state.callbacks])
    cuda = state.device.type == "cuda"
    synchronize = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.fit()
    seconds = marks[args.steps] - marks[args.warmup]
    timed = args.steps - args.warmup
    model = state.unwrapped_model
    batch = state.batch
    samples = model.num_samples(batch)  # per GPU
    tokens = model.num_tokens(batch)
    flops = model.flops_per_batch(batch)
    if flops is None:
        flops = _measured_flops(state)
    precision = Precision.AMP_BF16
    peak = peak_flops_per_second(state.device, precision)
    world.barrier()
    start = time.perf_counter()
    path = trainer.save_checkpoint()
    world.barrier()
    save_seconds = time.perf_counter() - start
    path = Path(world.broadcast_object(str(path) if state.rank == 0 else None))
    start = time.perf_counter()
    trainer.checkpointer.load(state, path)
    synchronize()
    world.barrier()
    load_seconds = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    memory_all = world.all_gather_objects(memory)
    result = {
        "workload": args.workload,
        "gpus": nproc,
        "strategy": config.parallelism.strategy,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "samples_per_s_per_gpu": samples * timed / seconds,
        "tokens_per_s_per_gpu": tokens * timed / seconds if tokens else None,
        "mfu": (flops * timed / seconds) / peak if peak and flops else None,
        "max_memory_gib": max(memory_all),
        "checkpoint_save_s": save_seconds,
        "checkpoint_load_s": load_seconds,
        "checkpoint_bytes": sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        if path.is_dir()
        else path.stat().st_size,
        "timed_steps": timed,
    }
    if state.rank == 0:
        Path(args.result).write_text(json.dumps(result))
    trainer.close()


def _measured_flops(state: Any) -> float:
    """Forward + backward FLOPs of one batch, counted by PyTorch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = state.unwrapped_model
    counter = FlopCounterMode(display=False)
    with counter, torch.autocast(state.device.type, dtype=torch.bfloat16):
        model.loss(model(state.batch), state.batch).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", required=True, help="folder with fashion-mnist/, tinyshakespeare/"
    )
    parser.add_argument("--workloads", default="resnet,gpt")
    parser.add_argument("--max-gpus", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--out", default="scaling.json")
    parser.add_argument("--smoke", action="store_true", help="tiny models on CPU (a check)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    import torch

    gpus = 1 if args.smoke else min(torch.cuda.device_count(), args.max_gpus)
    sizes = [n for n in (1, 2, 4, 8) if n <= gpus]
    results = []
    paths = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    with tempfile.TemporaryDirectory() as scratch:
        for workload in args.workloads.split(","):
            for nproc in sizes:
                result_file = Path(scratch) / f"{workload}-{nproc}.json"
                command = [
                    sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc-per-node={nproc}", __file__, "--worker",
                    f"--workload={workload}", f"--data={args.data}", f"--run-dir={scratch}",
                    f"--result={result_file}", f"--steps={args.steps}", f"--warmup={args.warmup}",
                    *(["--smoke"] if args.smoke else []),
                ]  # fmt: skip
                started = time.perf_counter()
                subprocess.run(
                    command, check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
                )
                result = json.loads(result_file.read_text())
                result["wall_s"] = time.perf_counter() - started
                results.append(result)
                print(json.dumps(result), flush=True)
    for result in results:
        base = next(r for r in results if r["workload"] == result["workload"] and r["gpus"] == 1)
        result["scaling_efficiency"] = (
            result["samples_per_s_per_gpu"] / base["samples_per_s_per_gpu"]
        )
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(table(results))


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| workload | GPUs | strategy | samples/s/GPU | tokens/s/GPU | MFU | scaling eff. "
        "| max mem/GPU (GiB) | ckpt save (s) | ckpt load (s) | ckpt size (MB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        tokens = f"{r['tokens_per_s_per_gpu']:,.0f}" if r["tokens_per_s_per_gpu"] else "-"
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] else "-"
        lines.append(
            f"| {r['workload']} | {r['gpus']} | {r['strategy']} | "
            f"{r['samples_per_s_per_gpu']:,.0f} | {tokens} | {mfu} | "
            f"{100 * r['scaling_efficiency']:.0f}% | {r['max_memory_gib']:.2f} | "
            f"{r['checkpoint_save_s']:.2f} | {r['checkpoint_load_s']:.2f} | "
            f"{r['checkpoint_bytes'] / 1e6:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
