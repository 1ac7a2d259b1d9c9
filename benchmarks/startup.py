"""Start-up: seconds from process start to the first training step, and of `tessera --help`.

Each measurement is a fresh process pinned to `--cores` (no GPU visible unless `--gpu`, which
keeps the GPU and defaults to the GPU recipe, uncompiled): `tessera train
RECIPE` until its `training ...` line (printed as the loop starts, after imports, data,
model and optimizer), `tessera --help` to its exit, and `python -c "import torch"` as the
floor every PyTorch program pays. `--src A --src B` times the same commands against several
source trees (e.g. a worktree of an earlier commit), alternating, so one run shows a change's
effect. The token cache is warmed once first (tokenization is cached by input hash).

    python benchmarks/startup.py --repeats 5 --out benchmarks/results/startup.json
    python benchmarks/startup.py --src src --src /tmp/old/src --repeats 5
    python benchmarks/startup.py --gpu --cores 0-3 --repeats 5     # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def seconds_until(command: list[str], env: dict, marker: str | None, cores: str) -> float:
    """Wall seconds until a line starting with `marker` (None: until the process exits)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        ["taskset", "-c", cores, *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if marker is not None and line.startswith(marker):
            seconds = time.perf_counter() - start
            process.kill()
            process.wait()
            return seconds
    process.wait()
    if marker is not None or process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} ended ({process.returncode}) before {marker!r}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default=None, help="default: the char recipe (CPU or GPU)")
    parser.add_argument("--gpu", action="store_true", help="keep the GPU visible")
    parser.add_argument("--src", action="append", default=None, help="source trees to compare")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cores", default="0,1")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    sources = args.src or [str(ROOT / "src")]
    args.recipe = args.recipe or f"recipes/shakespeare-char-{'gpu' if args.gpu else 'fast'}.yaml"
    threads = str(core_count(args.cores))
    base = {**os.environ, "OMP_NUM_THREADS": threads}
    if not args.gpu:
        base["CUDA_VISIBLE_DEVICES"] = ""
    run_dir = Path("/tmp/tessera-startup-runs")
    train = [sys.executable, "-m", "tessera.cli", "train", args.recipe, "max_duration=1ba"]
    commands = {
        "import torch": ([sys.executable, "-c", "import torch"], None),
        "tessera --help": ([sys.executable, "-m", "tessera.cli", "--help"], None),
        "tessera train (to the first step)": (train, "training "),
    }
    results: dict[str, dict[str, list[float]]] = {src: {} for src in sources}
    for src in sources:  # warm the token cache and the page cache
        env = {**base, "PYTHONPATH": python_path(src)}
        subprocess.run(
            [*train, f"run_dir={run_dir}", "save_interval=null"],
            env=env, cwd=ROOT, capture_output=True, check=True,
        )  # fmt: skip
    for _ in range(args.repeats):
        for src in sources:
            env = {**base, "PYTHONPATH": python_path(src)}
            for name, (command, marker) in commands.items():
                if name.startswith("tessera train"):
                    stamp = f"run_dir={run_dir}/{time.time_ns()}"
                    command = [*command, stamp, "save_interval=null"]
                seconds = seconds_until(command, env, marker, args.cores)
                results[src].setdefault(name, []).append(round(seconds, 3))
    summary = {
        "machine": f"{platform.node()} ({os.cpu_count()} cores), pinned to {args.cores}"
        + (f", GPU {gpu_name()}" if args.gpu else ", no GPU visible"),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "recipe": args.recipe,
        "results": {
            src: {
                name: {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}
                for name, v in rows.items()
            }
            for src, rows in results.items()
        },
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")


def python_path(src: str) -> str:
    """The source tree first, then what PYTHONPATH already holds (e.g. a wheel folder)."""
    return os.pathsep.join(filter(None, [str(Path(src).resolve()), os.environ.get("PYTHONPATH")]))


def core_count(cores: str) -> int:
    """How many cores a taskset list names ("0,1", "0-3", "0-3,8")."""
    count = 0
    for part in cores.split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


def gpu_name() -> str:
    query = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
    return subprocess.run(query, capture_output=True, text=True).stdout.strip() or "unknown"


if __name__ == "__main__":
    main()
