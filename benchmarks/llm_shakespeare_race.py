"""Char-level Shakespeare race: wall-clock time to a validation loss, nanoGPT vs Tessera.

Both run as separate processes on the same machine, one after the other, on the same 90/10
split of tinyshakespeare: nanoGPT's own `train_shakespeare_char` setup (an unmodified copy of
the peer, run from a temporary folder) and `tessera train recipes/shakespeare-char.yaml` with
overrides for the same model shape. Every output line is time-stamped from process start; a
run is timed to its first evaluation at or below the target; nanoGPT is stopped there, Tessera
runs on to export its model (for `tessera generate`) unless `--stop-tessera`; both stop at the
time limit.

    python benchmarks/llm_shakespeare_race.py --machine cpu --nanogpt ../shared/peers/nanoGPT \
        --text ../shared/data/tinyshakespeare/input.txt --target 1.88 --limit 1800
    python benchmarks/llm_shakespeare_race.py --machine gpu ... --target 1.47
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEVELS = (2.5, 2.3, 2.1, 2.0, 1.88, 1.6, 1.55, 1.5, 1.47)
NANOGPT_EVAL = re.compile(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)")
TESSERA_EVAL = re.compile(r"eval at batch (\d+): loss ([\d.]+)")

NANOGPT_ARGS = {
    # nanoGPT README's CPU configuration, verbatim.
    "cpu": [
        "--device=cpu",
        "--compile=False",
        "--eval_iters=20",
        "--log_interval=1",
        "--block_size=64",
        "--batch_size=12",
        "--n_layer=4",
        "--n_head=4",
        "--n_embd=128",
        "--max_iters=2000",
        "--lr_decay_iters=2000",
        "--dropout=0.0",
    ],
    "gpu": [],  # config/train_shakespeare_char.py as shipped (6x384, block 256, batch 64)
}


def tessera_overrides(machine: str, text: str, variant: str) -> list[str]:
    data = [f"data.text={text}", f"data.tokenizer=char:{text}", f"model.tokenizer=char:{text}"]
    common = ["save_interval=null", "loggers={progress: {}}", "data.eval_max_sequences=null"]
    if machine == "cpu" and variant in CPU_VARIANTS:
        return [*data, "save_interval=null", "loggers={progress: {}}", *schedule_cpu(variant)]
    if machine == "cpu":
        shape = [
            "model.n_layer=4",
            "model.n_head=4",
            "model.d_model=128",
            "model.max_seq_len=64",
            "data.seq_len=64",
            "data.batch_size=12",
            "data.eval_batch_size=512",
        ]
        schedule = {
            "a": ["max_duration=2000ba", "eval_interval=100ba", "optimizer.lr=0.002"],
            "b": [
                "max_duration=800ba",
                "eval_interval=100ba",
                "optimizer.lr=0.003",
                "data.batch_size=24",
                "scheduler.t_warmup=50ba",
                "data.eval_max_sequences=512",
            ],
        }
        return [*data, *common, *shape, *schedule[variant]]
    shape = [
        "model.n_layer=6",
        "model.n_head=6",
        "model.d_model=384",
        "model.max_seq_len=256",
        "model.dropout=0.2",
        "data.seq_len=256",
        "data.eval_batch_size=256",
        "precision=amp_bf16",
        "eval_interval=50ba",
        "scheduler.t_warmup=100ba",
        "optimizer.lr=0.002",
    ]
    compiled = ["compile={}"]
    blocks = ["compile={scope: blocks}"]
    schedule = {
        # nanoGPT's batch (64) with a shorter schedule at a higher learning rate
        "a": ["data.batch_size=64", "max_duration=3000ba", *compiled],
        # 2x and 4x the batch: more tokens a step at nearly the same step time on a GPU
        "b": ["data.batch_size=128", "max_duration=2000ba", *compiled],
        "c": ["data.batch_size=256", "max_duration=1500ba", *compiled],
        "d": ["data.batch_size=256", "max_duration=1500ba"],  # c without torch.compile
        # b and c overfit after ~30M tokens: budgets that end their cosine decay there, and a
        # compile of one transformer block (shared by all six) instead of the whole model
        "e": ["data.batch_size=128", "max_duration=1000ba", *blocks],
        "f": ["data.batch_size=128", "max_duration=1000ba"],
        "g": ["data.batch_size=256", "max_duration=600ba", *blocks],
        # nanoGPT draws windows at random offsets; back-to-back sequences (above) repeat the
        # same cuts every epoch and overfit sooner. window_stride=1: a window at every start.
        "h": ["data.batch_size=128", "max_duration=1000ba", "data.window_stride=1"],
        "i": ["data.batch_size=128", "max_duration=700ba", "data.window_stride=1"],
        "j": ["data.batch_size=256", "max_duration=500ba", "data.window_stride=1"],
    }
    return [*data, *common, *shape, *schedule[variant]]


CPU_VARIANTS = (
    "recipe",
    "short",
    "stride",
    "fast",
    "seqwarmup",
    "alibi",
    "glu",
    "glu1200",
    "glualibi",
)


def schedule_cpu(variant: str) -> list[str]:
    short = ["max_duration=1000ba", "optimizer.lr=0.003"]
    return {
        "recipe": [],
        "short": short,
        # windows at every start position instead of back-to-back cuts (as nanoGPT samples)
        "stride": [*short, "data.window_stride=1"],
        "fast": [
            "max_duration=700ba",
            "optimizer.lr=0.004",
            "scheduler.t_warmup=50ba",
            "data.window_stride=1",
        ],
        # the language-model methods, one at a time on `short` (the method table)
        "seqwarmup": [*short, "algorithms={sequence_length_warmup: {duration: 0.3}}"],
        "alibi": [*short, "algorithms={alibi: {}}"],
        "glu": [*short, "algorithms={gated_linear_units: {}}"],
        # the best of the method table, a little longer, evaluated every 100 batches
        "glu1200": [
            "max_duration=1200ba",
            "optimizer.lr=0.003",
            "eval_interval=100ba",
            "algorithms={gated_linear_units: {}}",
        ],
        "glualibi": [
            "max_duration=1200ba",
            "optimizer.lr=0.003",
            "eval_interval=100ba",
            "algorithms={gated_linear_units: {}, alibi: {}}",
        ],
    }[variant]


def race(
    stop: bool,
    command: list[str],
    cwd: Path,
    pattern: re.Pattern,
    loss_group: int,
    target: float,
    limit: float,
    log: Path,
    env: dict | None = None,
) -> dict:
    """Run until an evaluation reaches `target`; return the time and the eval history."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env=env,
    )
    history, reached = [], None
    with open(log, "w") as handle:
        for line in process.stdout:
            now = time.perf_counter() - start
            handle.write(f"{now:8.2f} {line}")
            handle.flush()
            match = pattern.search(line)
            if match:
                loss = float(match.group(loss_group))
                history.append(
                    {"step": int(match.group(1)), "seconds": round(now, 2), "val_loss": loss}
                )
                name = log.stem
                print(f"  {name}: {now:7.1f}s step {match.group(1)} val {loss:.4f}", flush=True)
                if loss <= target and reached is None:
                    reached = now
                    if stop:
                        break
            if now > limit:
                break
    process.kill()
    process.wait()
    return {
        "seconds_to_target": reached,
        "history": history,
        "wall_seconds": round(time.perf_counter() - start, 1),
    }


def run_nanogpt(args: argparse.Namespace, work: Path) -> dict:
    copy = work / "nanoGPT"
    shutil.copytree(args.nanogpt, copy)
    shutil.copy(args.text, copy / "data" / "shakespeare_char" / "input.txt")
    subprocess.run(
        [sys.executable, "data/shakespeare_char/prepare.py"],
        cwd=copy,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    command = [
        sys.executable,
        "train.py",
        "config/train_shakespeare_char.py",
        *NANOGPT_ARGS[args.machine],
        f"--out_dir={work / 'nanogpt-out'}",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return race(
        True,
        command,
        copy,
        NANOGPT_EVAL,
        3,
        args.target,
        args.limit,
        args.logs / "nanogpt.log",
        env,
    )


def run_tessera(args: argparse.Namespace, work: Path, variant: str) -> dict:
    text = str(Path(args.text).resolve())
    command = [
        sys.executable,
        "-m",
        "tessera.cli",
        "train",
        str(ROOT / "recipes" / "shakespeare-char.yaml"),
        f"run_dir={work}",
        f"name=tessera-{variant}",
        *tessera_overrides(args.machine, text, variant),
    ]
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    return race(
        args.stop_tessera,
        command,
        ROOT,
        TESSERA_EVAL,
        2,
        args.target,
        args.limit,
        args.logs / f"tessera-{variant}.log",
        env,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--machine", choices=["cpu", "gpu"], required=True)
    parser.add_argument("--nanogpt", required=True, help="the peer's folder")
    parser.add_argument("--text", required=True, help="tinyshakespeare input.txt")
    parser.add_argument("--target", type=float, required=True)
    parser.add_argument("--limit", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--runs", default="nanogpt,tessera-a", help="which runs, in order")
    parser.add_argument("--logs", type=Path, default=Path("race-logs"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--stop-tessera",
        action="store_true",
        help="stop Tessera runs at the target too (saves GPU time; no exported model)",
    )
    parser.add_argument("--work", default=None, help="keep run folders here (default: temp)")
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="run all at once (on a machine loaded by others, both then share its load)",
    )
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    results = {"machine": args.machine, "target": args.target}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.work or scratch

        def one(run: str) -> dict:
            if run == "nanogpt":
                return run_nanogpt(args, Path(tmp))
            return run_tessera(args, Path(tmp), run.split("-", 1)[1])

        runs = args.runs.split(",")
        if args.parallel:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(runs)) as pool:
                for run, result in zip(runs, pool.map(one, runs)):
                    results[run] = result
        else:
            for run in runs:
                print(f"{run}:", flush=True)
                results[run] = one(run)
    for run in runs:
        history = results[run]["history"]
        results[run]["seconds_to"] = {
            str(level): next((h["seconds"] for h in history if h["val_loss"] <= level), None)
            for level in LEVELS
        }
    base = results.get("nanogpt", {}).get("seconds_to_target")
    for value in results.values():
        if isinstance(value, dict) and value.get("seconds_to_target") and base:
            value["speedup_vs_nanogpt"] = round(base / value["seconds_to_target"], 2)
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
