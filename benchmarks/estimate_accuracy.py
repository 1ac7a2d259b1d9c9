"""How close `tessera estimate` comes to the real wall time: table mode and probe mode against a
measured `tessera train` process, for four recipes; plus the estimate for a published run
(MosaicML's MPT-7B: 1T tokens on 440 A100-40GB in 9.5 days for ~$200k).

    # one H200 GPU (about 5 minutes):
    python benchmarks/estimate_accuracy.py --data DIR --out results/estimate
    # CPU smoke test (tiny shapes, under a minute on an idle 2-core machine):
    python benchmarks/estimate_accuracy.py --smoke --out /tmp/estimate-smoke

DIR holds fashion-mnist/ (the IDX files) and tinyshakespeare/input.txt (default: ../shared/data
beside the repository). For each case: the table estimate for this machine's device, the probe
estimate (`--probe` steps here, in this process), then the measured wall-clock of
`python -m tessera.cli train RECIPE ...` in a fresh process (start-up, compilation,
evaluation and checkpoints included, as the estimate counts them). Writes estimate.json and
estimate.md into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

MOSAIC = {"days": 9.5, "dollars": 200_000, "gpus": 440, "gpu": "a100-40gb"}


def cases(data: Path, smoke: bool, gpu: bool) -> dict[str, tuple[str, list[str]]]:
    """name -> (recipe, overrides). GPU shapes are the recipes' own, shortened to a few hundred
    steps; smoke shapes are tiny versions of the same."""
    text = data / "tinyshakespeare" / "input.txt"
    fashion = data / "fashion-mnist"
    lm_data = [f"data.text={text}", "data.tokenizer=byte", "model.tokenizer=byte", "data.path=null"]
    device = ["device=cuda" if gpu else "device=cpu"]
    common = ["loggers.progress.mode=lines", "loggers.progress.log_interval=50", *device]
    if smoke:
        tiny_lm = [
            "model.n_layer=1",
            "model.n_head=2",
            "model.d_model=32",
            "model.max_seq_len=32",
            "data.seq_len=32",
            "model.vocab_size=null",
            "precision=fp32",
            "algorithms={}",
            "device_train_microbatch_size=null",
            "data.batch_size=8",
            "data.eval_max_sequences=16",
            "max_duration=20ba",
            "eval_interval=10ba",
            "save_interval=20ba",
        ]
        return {
            "gpt-125m": ("recipes/gpt-125m.yaml", [*lm_data, *tiny_lm, *common]),
            "fashion-mnist-resnet": (
                "recipes/fashion-mnist-baseline.yaml",
                [
                    f"data.path={fashion}",
                    "data.train_subset=1024",
                    "data.eval_subset=512",
                    "model.width=4",
                    "max_duration=2ep",
                    *common,
                ],
            ),
            "char-gpt": (
                "recipes/shakespeare-char.yaml",
                [
                    f"model.tokenizer=char:{text}",
                    f"data.text={text}",
                    f"data.tokenizer=char:{text}",
                    "model.n_layer=1",
                    "model.d_model=32",
                    "model.n_head=2",
                    "model.max_seq_len=32",
                    "data.seq_len=32",
                    "data.eval_max_sequences=32",
                    "max_duration=30ba",
                    "eval_interval=15ba",
                    "save_interval=null",
                    *common,
                ],
            ),
        }
    lm = [
        *lm_data,
        "data.seq_len=2048",
        "data.eval_max_sequences=32",
        "data.eval_batch_size=8",
        "max_duration=200ba",
        "eval_interval=100ba",
        "save_interval=200ba",
        "keep_last=1",
        "data.num_workers=2",
    ]
    return {
        "gpt-125m": ("recipes/gpt-125m.yaml", [*lm, "data.batch_size=16", *common]),
        "gpt-350m": (
            "recipes/gpt-350m.yaml",
            [*lm, "data.batch_size=8", "device_train_microbatch_size=8", *common],
        ),
        "fashion-mnist-resnet": (
            "recipes/fashion-mnist-baseline.yaml",
            [f"data.path={fashion}", "max_duration=3ep", *common],
        ),
        "char-gpt": (
            "recipes/shakespeare-char.yaml",
            [
                f"model.tokenizer=char:{text}",
                f"data.text={text}",
                f"data.tokenizer=char:{text}",
                "model.n_layer=6",
                "model.n_head=6",
                "model.d_model=384",
                "model.max_seq_len=256",
                "model.dropout=0.2",
                "data.seq_len=256",
                "data.batch_size=128",
                "data.eval_batch_size=128",
                "data.eval_max_sequences=512",
                "precision=amp_bf16",
                "max_duration=600ba",
                "eval_interval=300ba",
                "save_interval=null",
                *common,
            ],
        ),
    }


def estimate_case(recipe: str, overrides: list[str], probe_steps: int, import_seconds: float):
    from tessera.config import load_config
    from tessera.estimate.hardware import local_hardware
    from tessera.estimate.plan import estimate_from_probe, estimate_from_table
    from tessera.estimate.probe import run_probe
    from tessera.estimate.workload import read_workload

    config = load_config(ROOT / recipe, overrides)
    workload = read_workload(config, recipe)
    hardware = local_hardware()
    table = estimate_from_table(config, workload, hardware)
    probe = run_probe(config, probe_steps, import_seconds)
    probed = estimate_from_probe(config, workload, hardware, probe)
    return table, probed


def measure(recipe: str, overrides: list[str], run_dir: Path, limit: float) -> dict:
    """Wall-clock of a fresh `tessera train` process, and what its metrics say."""
    command = [
        sys.executable,
        "-m",
        "tessera.cli",
        "train",
        str(ROOT / recipe),
        *overrides,
        f"run_dir={run_dir}",
        "name=measured",
        "autoresume=false",
    ]
    path = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}  # keep carried wheels' folder
    # A first run compiles from nothing, as the estimate assumes: not from the probe's cache.
    env["TORCHINDUCTOR_CACHE_DIR"] = str(run_dir / "inductor-cache")
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=limit, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{recipe} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    summary = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    mfu = [
        json.loads(line).get("throughput/mfu")
        for line in (run_dir / "measured" / "metrics.jsonl").read_text().splitlines()
    ]
    mfu = [value for value in mfu if isinstance(value, float)]
    return {
        "wall_seconds": seconds,
        "fit_seconds": summary["seconds"],
        "mfu": mfu[-1] if mfu else None,
    }


def mpt_7b() -> dict:
    """The estimator on MPT-7B's published shape (no GPU needed)."""
    from tessera.config import validate_config
    from tessera.estimate.hardware import get_hardware
    from tessera.estimate.plan import estimate_from_table
    from tessera.estimate.workload import read_workload

    config = validate_config(
        {
            "name": "mpt-7b",
            "max_duration": "1e12tok",
            "eval_interval": "1000000ba",
            "save_interval": "2000ba",
            "precision": "amp_bf16",
            "device_train_microbatch_size": 4,
            "model": {
                "name": "gpt",
                "n_layer": 32,
                "n_head": 32,
                "d_model": 4096,
                "max_seq_len": 2048,
                "vocab_size": 50432,
                "position": "alibi",
                "norm": "layernorm",
                "mlp": "gelu",
                "bias": False,
                "tie_embeddings": True,
            },
            "data": {
                "name": "text",
                "path": "/nonexistent/mpt-data",
                "batch_size": 1760,
                "seq_len": 2048,
            },
            "optimizer": {"name": "adamw", "lr": 3e-4},
            "compile": {},
            "activation_checkpointing": True,
            "parallelism": {"strategy": "fsdp"},
        },
        source="the MPT-7B shape",
    )
    price = MOSAIC["dollars"] / (MOSAIC["gpus"] * MOSAIC["days"] * 24)  # their implied $/GPU-h
    workload = read_workload(config, "MPT-7B shape")
    estimate = estimate_from_table(
        config, workload, get_hardware(MOSAIC["gpu"]), MOSAIC["gpus"], price
    )
    days = {k: v / 86400 for k, v in estimate.wall_seconds.items()}
    return {
        "reported_days": MOSAIC["days"],
        "reported_dollars": MOSAIC["dollars"],
        "implied_price_per_gpu_hour": price,
        "estimated_days": days,
        "estimated_dollars": estimate.dollars,
        "mfu": estimate.mfu,
        "scaling_efficiency": estimate.scaling,
        "error": days["expected"] / MOSAIC["days"] - 1,
        "estimate": estimate.to_dict(),
    }


def markdown(report: dict) -> str:
    lines = [
        f"# Estimator accuracy ({report['machine']}, {report['date']})",
        "",
        f"Command: `{report['command']}`",
        "",
        "| recipe | measured wall | table: expected (low - high) | table error | "
        "probe: expected | probe error | table MFU | probe MFU | run's MFU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in report["cases"].items():
        if "error" in row and isinstance(row["error"], str):
            lines.append(f"| {name} | failed: {row['error'][:80]} | | | | | | | |")
            continue
        t, p, m = row["table"], row["probe"], row["measured"]

        def pct(x):
            return f"{x:.1%}" if isinstance(x, float) else "-"

        lines.append(
            f"| {name} | {m['wall_seconds']:.1f} s | {t['wall_seconds']['expected']:.1f} s "
            f"({t['wall_seconds']['low']:.1f} - {t['wall_seconds']['high']:.1f}) | "
            f"{row['table_error']:+.1%} | {p['wall_seconds']['expected']:.1f} s | "
            f"{row['probe_error']:+.1%} | {pct(t['mfu'])} | {pct(p['mfu'])} | {pct(m['mfu'])} |"
        )
    mpt = report["mpt_7b"]
    lines += [
        "",
        "## A published run: MPT-7B",
        "",
        f"MosaicML reported 1T tokens on {MOSAIC['gpus']} A100-40GB in {MOSAIC['days']} "
        f"days for ~${MOSAIC['dollars']:,} (${mpt['implied_price_per_gpu_hour']:.2f} per "
        f"GPU hour). The estimator: {mpt['estimated_days']['expected']:.1f} days "
        f"({mpt['estimated_days']['low']:.1f} - {mpt['estimated_days']['high']:.1f}), "
        f"${mpt['estimated_dollars']['expected']:,.0f}; {mpt['error']:+.1%} from the "
        f"reported time (MFU {mpt['mfu']:.1%}, scaling efficiency "
        f"{mpt['scaling_efficiency']:.2f}).",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true", help="tiny CPU shapes")
    parser.add_argument("--probe-steps", type=int, default=None)
    parser.add_argument("--only", nargs="*", default=None, help="case names to run")
    args = parser.parse_args()
    import torch
    import torchmetrics  # noqa: F401  (a run imports it; its time belongs to start-up)

    import tessera.config.build  # noqa: F401
    from tessera.callbacks.cost_monitor import process_age

    import_seconds = process_age()
    gpu = torch.cuda.is_available() and not args.smoke
    steps = args.probe_steps or (5 if args.smoke else 10)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = torch.cuda.get_device_name(0) if gpu else f"{platform.machine()} CPU"
    report = {
        "machine": machine,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["python", *sys.argv]),
        "probe_steps": steps,
        "cases": {},
    }
    for name, (recipe, overrides) in cases(args.data, args.smoke, gpu).items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        try:
            table, probed = estimate_case(recipe, overrides, steps, import_seconds)
            measured = measure(recipe, overrides, args.out / "runs" / name, 600)
        except Exception as error:  # one failing case must not lose the others
            report["cases"][name] = {"error": f"{type(error).__name__}: {error}"}
            print(f"   failed: {error}", flush=True)
            continue
        wall = measured["wall_seconds"]
        row = {
            "table": table.to_dict(),
            "probe": probed.to_dict(),
            "measured": measured,
            "table_error": table.wall_seconds["expected"] / wall - 1,
            "probe_error": probed.wall_seconds["expected"] / wall - 1,
        }
        report["cases"][name] = row
        print(
            f"   measured {wall:.1f} s, table {table.wall_seconds['expected']:.1f} s "
            f"({row['table_error']:+.1%}), probe {probed.wall_seconds['expected']:.1f} s "
            f"({row['probe_error']:+.1%})",
            flush=True,
        )
    report["mpt_7b"] = mpt_7b()
    (args.out / "estimate.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (args.out / "estimate.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if all("error" not in row for row in report["cases"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
