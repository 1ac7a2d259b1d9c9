"""Char-level race: wall-clock time to a validation loss, nanoGPT vs Tessera, one evaluator.

Both sides run as separate processes on the same machine in the same call, several times
each: nanoGPT unmodified with its shipped `train_shakespeare_char` config (its README's CPU
overrides on `cpu`), from a temporary copy, and `tessera train RECIPE`. Every checkpoint either
side writes is kept with the time it was written (seconds from that process's start), and
after the runs every checkpoint is scored by the same code, `lm_scoring.score`, on the whole
validation split: the time to a loss is the time of the first checkpoint at or below it.

* `cpu`: every run at once, each pinned to its own 2 cores (`taskset`) with 2 threads and no
  GPU visible; nanoGPT runs its 2000 iterations. `--one-at-a-time` runs them one after another
  instead (alternating sides, 2 threads, all cores), for a machine with only 2 cores.
  Targets: nanoGPT's final loss as it reports it (1.8857) and as the common evaluator scores
  it (median over its repeats).
* `gpu`: runs one after another on the GPU, alternating sides; nanoGPT stops one evaluation
  after its own estimate reaches `--target` (1.47). Its checkpoints are written only when its
  estimate improves (its config), so points where it did not improve have no checkpoint.
  `--budget S` skips the runs that would not fit in S seconds (judged by the slowest run of
  the same side so far), and says so.

Start-up (`seconds_to_first_step`): Tessera's `training ...` line, printed as its loop starts;
nanoGPT's `iter 0` line, printed after its first step and its evaluation at step 0 (so its
number is a little late: an upper bound).

A side's median time to a level counts a run that never reached it as slower than every run
that did (so 2 of 3 reaching it still give a median, the slower of the two); with fewer than
half reaching it there is none. `resummarise race.json` recomputes an older file's medians.

Levels: `reported` (nanoGPT's reported loss; `--reported none` for another text, where that
number means nothing) and `nanogpt_final_common`, the median common-evaluator loss of
nanoGPT's last checkpoints (on `gpu` its best: it stops after reaching the target).

    python benchmarks/llm_shakespeare_race.py cpu --nanogpt PEER --text input.txt --out DIR
    python benchmarks/llm_shakespeare_race.py gpu --nanogpt PEER --text input.txt --out DIR
    python benchmarks/llm_shakespeare_race.py cpu ... --smoke     # tiny shapes on the CPU
    python benchmarks/llm_shakespeare_race.py gpu ... --smoke     # the gpu path, on the CPU
    python benchmarks/llm_shakespeare_race.py resummarise DIR/race.json

`--extra "NAME=RECIPE[;key=value...]"` adds Tessera variants (one run each) for ablations; a
`.jsonl` text (e.g. LAMBADA) is joined into plain text first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_scoring import nanogpt_reference_loss

ROOT = Path(__file__).resolve().parents[1]
NANOGPT_REPORTED = {"cpu": 1.8857, "gpu": 1.47}
NANOGPT_EVAL = re.compile(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)")
TESSERA_EVAL = re.compile(r"eval at batch (\d+): loss ([\d.]+).*?\(([\d.]+) s\)")
NANOGPT_ITER = re.compile(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms")
RECIPES = {"cpu": "recipes/shakespeare-char-fast.yaml", "gpu": "recipes/shakespeare-char-gpu.yaml"}
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
SMOKE_NANOGPT = "--device=cpu --compile=False --eval_iters=2 --log_interval=1 --block_size=32 "
SMOKE_NANOGPT += "--batch_size=4 --n_layer=1 --n_head=2 --n_embd=32 --max_iters=20 "
SMOKE_NANOGPT += "--lr_decay_iters=20 --eval_interval=10 --warmup_iters=2 --dropout=0.0"
SMOKE_TESSERA = [
    "max_duration=20ba",
    "eval_interval=10ba",
    "model.n_layer=1",
    "model.n_head=2",
    "model.d_model=32",
    "model.max_seq_len=32",
    "data.seq_len=32",
    "data.batch_size=4",
    "data.eval_max_sequences=8",
    "precision=fp32",
]


def plain_text(path: Path, work: Path) -> Path:
    """A .txt as it is; a .jsonl (LAMBADA's context + continuation) joined into one text."""
    if path.suffix != ".jsonl":
        return path.resolve()
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    text = "\n\n".join(r["context"] + " " + r["continuation"] for r in records) + "\n"
    out = work / f"{path.stem}.txt"
    out.write_text(text, encoding="utf-8")
    return out


class Run:
    """One process of one side, its time-stamped log and its checkpoints."""

    def __init__(self, side: str, name: str, folder: Path) -> None:
        self.side, self.name, self.folder = side, name, folder
        self.checkpoints: list[dict] = []  # {"step", "path", "seconds", "own_val_loss"}
        self.own: list[dict] = []  # the program's own evaluations
        self.eval_seconds = 0.0
        self.wall = 0.0
        self.first_step = None
        self.skipped = False

    def summary(self) -> dict:
        return {
            "side": self.side,
            "wall_seconds": round(self.wall, 2),
            "seconds_to_first_step": self.first_step,
            "eval_seconds": round(self.eval_seconds, 2),
            "eval_share": round(self.eval_seconds / self.wall, 4) if self.wall else None,
            "own_evaluations": self.own,
            "points": [{k: v for k, v in c.items() if k != "path"} for c in self.checkpoints],
        }


def launch(run: Run, command: list[str], cwd: Path, env: dict, limit: float, stop) -> None:
    """Run `command`, time-stamping its output into the run's log; `stop(run, line)` may end
    it early. The start is wall-clock (checkpoint mtimes are compared with it)."""
    run.folder.mkdir(parents=True, exist_ok=True)
    run.start = time.time()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    timer = threading.Timer(limit, process.kill)
    timer.start()
    with open(run.folder / "log.txt", "w") as log:
        for line in process.stdout:
            now = time.time() - run.start
            log.write(f"{now:8.2f} {line}")
            if stop(run, line, now):
                process.kill()
                break
    process.wait()
    timer.cancel()
    run.wall = time.time() - run.start


def nanogpt_watcher(args: argparse.Namespace, out_dir: Path):
    """Keeps a copy of each ckpt.pt nanoGPT writes (it overwrites one file), taken at its next
    log line, when the write is complete. Its evaluation time is the extra time of the
    iteration that evaluated (its `time` includes the evaluation and the checkpoint write)
    over the median iteration."""
    state: dict = {"pending": None, "reached": False, "stop": False, "times": []}

    def watch(run: Run, line: str, now: float) -> bool:
        found = NANOGPT_EVAL.search(line)
        if found:
            step, loss = int(found[1]), float(found[3])
            run.own.append({"step": step, "seconds": round(now, 2), "val_loss": loss})
            state["stop"] = state["reached"] and args.machine == "gpu"  # one past its target
            state["reached"] = state["reached"] or loss <= args.target
            return False
        if "saving checkpoint" in line:
            state["pending"] = run.own[-1]
            return False
        if state["pending"] is not None and (out_dir / "ckpt.pt").is_file():
            source, evaluation = out_dir / "ckpt.pt", state["pending"]
            copy = run.folder / f"step{evaluation['step']}.pt"
            shutil.copy2(source, copy)
            seconds = round(source.stat().st_mtime - run.start, 2)
            run.checkpoints.append(
                {
                    "step": evaluation["step"],
                    "path": str(copy),
                    "seconds": seconds,
                    "own_val_loss": evaluation["val_loss"],
                }
            )
            state["pending"] = None
        iteration = NANOGPT_ITER.search(line)
        if iteration:
            run.first_step = run.first_step or round(now, 2)
            seconds = float(iteration[2]) / 1000
            if run.own and run.own[-1]["step"] == int(iteration[1]) and state["times"]:
                run.eval_seconds += max(seconds - statistics.median(state["times"][-50:]), 0.0)
            else:
                state["times"].append(seconds)
            return state["stop"]
        return False

    return watch


def run_nanogpt(args: argparse.Namespace, run: Run, text: Path, env: dict, prefix: list) -> None:
    copy = run.folder / "nanoGPT"
    shutil.copytree(args.nanogpt, copy)
    shutil.copy(text, copy / "data" / "shakespeare_char" / "input.txt")
    prepare = [sys.executable, "data/shakespeare_char/prepare.py"]
    subprocess.run(prepare, cwd=copy, check=True, stdout=subprocess.DEVNULL, env=env)
    out_dir = run.folder / "out"
    extra = SMOKE_NANOGPT.split() if args.smoke else NANOGPT_ARGS[args.machine]
    command = [*prefix, sys.executable, "train.py", "config/train_shakespeare_char.py"]
    command += [*extra, f"--out_dir={out_dir}"]
    launch(run, command, copy, env, args.limit, nanogpt_watcher(args, out_dir))


def run_tessera(
    args: argparse.Namespace,
    run: Run,
    recipe: str,
    overrides: list,
    text: Path,
    env: dict,
    prefix: list,
) -> None:
    """`tessera train RECIPE` with checkpoints at every evaluation, all kept."""
    from tessera.config import load_config

    data = [f"data.text={text}", f"data.tokenizer=char:{text}", f"model.tokenizer=char:{text}"]
    overrides = [*data, *overrides, *(SMOKE_TESSERA if args.smoke else [])]
    config = load_config(ROOT / recipe, overrides)
    keep = [f"save_interval={config.eval_interval}", "keep_last=null", "loggers={progress: {}}"]
    command = [*prefix, sys.executable, "-m", "tessera.cli", "train", str(ROOT / recipe)]
    command += [f"run_dir={run.folder}", "name=run", *keep, *overrides]

    def watch(run: Run, line: str, now: float) -> bool:
        found = TESSERA_EVAL.search(line)
        if found:
            run.own.append(
                {"step": int(found[1]), "seconds": round(now, 2), "val_loss": float(found[2])}
            )
            run.eval_seconds += float(found[3])
        if run.first_step is None and line.startswith("training "):  # the loop starts
            run.first_step = round(now, 2)
        return False

    launch(run, command, ROOT, env, args.limit, watch)
    own = {e["step"]: e["val_loss"] for e in run.own}
    for path in sorted((run.folder / "run" / "checkpoints").glob("ep*-ba*.pt")):
        step = int(path.stem.split("-ba")[1])
        run.checkpoints.append(
            {
                "step": step,
                "path": str(path),
                "seconds": round(path.stat().st_mtime - run.start, 2),
                "own_val_loss": own.get(step),
            }
        )
    run.checkpoints.sort(key=lambda c: c["step"])


def score_all(
    args: argparse.Namespace, runs: list[Run], text: Path, slots: list[list[str]]
) -> None:
    """Every checkpoint through `lm_scoring`: on cpu one process per run, pinned, all at once;
    on gpu one process per side, one after another (a CUDA start-up each, not one per run)."""
    if args.machine == "cpu":
        groups = [[run] for run in runs]
    else:
        sides: dict[str, list[Run]] = {}
        for run in runs:
            sides.setdefault(run.side, []).append(run)
        groups = list(sides.values())

    def score(item: tuple[int, list[Run]]) -> None:
        index, group = item
        checkpoints = [c for run in group for c in run.checkpoints]
        if not checkpoints:
            return
        command = [
            *slots[index % len(slots)],
            sys.executable,
            str(ROOT / "benchmarks" / "lm_scoring.py"),
        ]
        command += [c["path"] for c in checkpoints] + ["--text", str(text)]
        command += ["--device", "cuda" if args.machine == "gpu" and not args.smoke else "cpu"]
        command += ["--nanogpt"] if group[0].side == "nanogpt" else []
        command += ["--limit", "4096"] if args.smoke else []
        result = subprocess.run(command, capture_output=True, text=True, env=cpu_env(args, ROOT))
        if result.returncode:
            raise RuntimeError(f"scoring {group[0].name} failed:\n{result.stderr[-3000:]}")
        lines = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
        for checkpoint, scored in zip(checkpoints, lines, strict=True):
            checkpoint["val_loss"] = scored["val_loss"]

    workers = len(slots) if args.machine == "cpu" else 1
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(score, enumerate(groups)))


def seconds_to(run: Run, level: float) -> float | None:
    return next((c["seconds"] for c in run.checkpoints if c.get("val_loss", 9) <= level), None)


def censored_median(times: list[float | None]) -> float | None:
    """Median seconds to a level, where a run that never reached it (None) counts as slower
    than every run that did: defined while the middle run(s) reached it, else None."""
    ordered = sorted(times, key=lambda t: float("inf") if t is None else t)
    middle = ordered[(len(ordered) - 1) // 2 : len(ordered) // 2 + 1]
    if not middle or None in middle:
        return None
    return statistics.median(middle)


def level_cell(level: float, times: list[float | None]) -> dict:
    reached = sorted(t for t in times if t is not None)
    return {
        "level": level,
        "seconds": times,
        "median": censored_median(times),
        "min": reached[0] if reached else None,
        "max": reached[-1] if reached else None,
        "reached": f"{len(reached)}/{len(times)}",
    }


def add_ratios(table: dict, levels: dict) -> None:
    """Each side's ratio to nanoGPT at each level: nanoGPT's median over the side's."""
    base = table.get("nanogpt", {})
    for row in table.values():
        for label in levels:
            ours, theirs = row[label]["median"], base.get(label, {}).get("median")
            row[label]["ratio_vs_nanogpt"] = round(theirs / ours, 2) if ours and theirs else None


def summarise(args: argparse.Namespace, runs: list[Run]) -> dict:
    sides: dict[str, list[Run]] = {}
    for run in runs:
        sides.setdefault(run.side, []).append(run)
    finals = [r.checkpoints[-1]["val_loss"] for r in sides.get("nanogpt", []) if r.checkpoints]
    levels = {}
    if args.reported != "none":
        levels["reported"] = float(args.reported or args.target)
    if finals:
        levels["nanogpt_final_common"] = statistics.median(finals)
    table = {}
    for side, members in sides.items():
        row = {}
        for label, level in levels.items():
            row[label] = level_cell(level, [seconds_to(r, level) for r in members])
        row["final_val_loss"] = [
            r.checkpoints[-1].get("val_loss") if r.checkpoints else None for r in members
        ]
        row["eval_share"] = [round(r.eval_seconds / r.wall, 4) if r.wall else None for r in members]
        row["seconds_to_first_step"] = [r.first_step for r in members]
        table[side] = row
    add_ratios(table, levels)
    return {"levels": levels, "sides": table}


def resummarise(path: Path) -> dict:
    """A race.json's medians and ratios computed again from its stored seconds (for a file
    written before `censored_median`); race.json and race.md beside it are rewritten."""
    result = json.loads(path.read_text())
    for row in result["sides"].values():
        for label, level in result["levels"].items():
            row[label] = level_cell(level, row[label]["seconds"])
    add_ratios(result["sides"], result["levels"])
    path.write_text(json.dumps(result, indent=1))
    path.with_suffix(".md").write_text(markdown(result))
    return result


def markdown(result: dict) -> str:
    lines = [
        f"Race on {result['machine']}: {result['text']}, Tessera recipe {result['recipe']}, "
        f"{result['repeats']} repeats; every loss by the common evaluator on the whole "
        "validation split.",
        "",
        "| side | level | median s | min-max s | reached | ratio vs nanoGPT | final val (common) "
        "| eval share | first step s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for side, row in result["sides"].items():
        for label, level in result["levels"].items():
            cell = row[label]
            span = f"{cell['min']}-{cell['max']}" if cell["min"] is not None else "-"
            lines.append(
                f"| {side} | {label} {level} | {cell['median']} | {span} | {cell['reached']} | "
                f"{cell['ratio_vs_nanogpt']} | {row['final_val_loss']} | {row['eval_share']} | "
                f"{row['seconds_to_first_step']} |"
            )
    return "\n".join(lines) + "\n"


def cpu_env(args: argparse.Namespace, cwd: Path) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    if args.machine == "cpu":
        env.update(OMP_NUM_THREADS="2", MKL_NUM_THREADS="2", CUDA_VISIBLE_DEVICES="")
    return env


def core_slots(count: int) -> list[list[str]]:
    """`taskset` prefixes giving each of `count` runs its own 2 cores (none when too few)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 * count or not shutil.which("taskset"):
        print(f"note: {len(cores)} cores for {count} runs: not pinned", flush=True)
        return [[]]
    return [["taskset", "-c", f"{cores[2 * i]},{cores[2 * i + 1]}"] for i in range(count)]


def run_in_budget(args: argparse.Namespace, jobs: list, start) -> None:
    """Jobs one after another; with `--budget`, a job whose side took longer than the budget
    left (judged by that side's slowest run so far) is skipped, and said so."""
    began, took = time.time(), {}
    for item in enumerate(jobs):
        run = item[1][0]
        left = args.budget - (time.time() - began) if args.budget else None
        if left is not None and took.get(run.side, 0.0) > left:
            print(f"  {run.name}: skipped, {left:.0f} s of the budget left", flush=True)
            run.skipped = True
            continue
        start(item)
        took[run.side] = max(took.get(run.side, 0.0), run.wall)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "resummarise":
        print(markdown(resummarise(Path(sys.argv[2]))), end="")
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("machine", choices=["cpu", "gpu"])
    parser.add_argument("--nanogpt", required=True, type=Path, help="the peer's folder")
    parser.add_argument("--text", required=True, type=Path, help="input.txt (or a .jsonl)")
    parser.add_argument("--recipe", default=None, help="Tessera's recipe (default per machine)")
    parser.add_argument("--extra", action="append", default=[], help="NAME=RECIPE[;key=value...]")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sides", default="nanogpt,tessera", help="which sides repeat")
    parser.add_argument("--target", type=float, default=None, help="nanoGPT's stop (gpu)")
    parser.add_argument("--limit", type=float, default=None, help="seconds per run")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reported", default=None, help="the level nanoGPT reports, or none")
    parser.add_argument(
        "--budget", type=float, default=None, help="gpu: seconds for all runs; later runs skip"
    )
    parser.add_argument(
        "--one-at-a-time",
        action="store_true",
        help="cpu: runs one after another, alternating sides, on all cores (a 2-core machine)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, 1 repeat, all on CPU")
    args = parser.parse_args()
    if args.smoke:
        args.repeats = 1
    args.target = args.target or NANOGPT_REPORTED[args.machine]
    args.limit = args.limit or (150 if args.smoke else 400 if args.machine == "cpu" else 150)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="race-"))
    text = plain_text(args.text, work)
    recipe = args.recipe or RECIPES[args.machine]
    jobs: list[tuple[Run, object]] = []
    for repeat in range(args.repeats):
        for side in args.sides.split(","):
            run = Run(side, f"{side}-{repeat}", work / f"{side}-{repeat}")
            jobs.append((run, (recipe, [])))
    for spec in args.extra:
        name, _, rest = spec.partition("=")
        extra_recipe, *overrides = rest.split(";")
        jobs.append(
            (
                Run(f"tessera-{name}", f"tessera-{name}", work / f"tessera-{name}"),
                (extra_recipe, overrides),
            )
        )
    runs = [run for run, _ in jobs]
    parallel = args.machine == "cpu" and not args.one_at_a_time
    slots = core_slots(len(runs)) if parallel else [[]]

    def start(item: tuple[int, tuple[Run, tuple]]) -> None:
        index, (run, (chosen, overrides)) = item
        prefix = slots[index % len(slots)]
        env = cpu_env(args, ROOT)
        if run.side == "nanogpt":
            run_nanogpt(args, run, text, env, prefix)
        else:
            run_tessera(args, run, chosen, overrides, text, env, prefix)
        print(f"  {run.name}: {run.wall:.1f} s, {len(run.checkpoints)} checkpoints", flush=True)

    if parallel:
        with ThreadPoolExecutor(len(runs)) as pool:
            list(pool.map(start, enumerate(jobs)))
    else:
        run_in_budget(args, jobs, start)
    runs = [run for run in runs if not run.skipped]
    check = next((r for r in runs if r.side == "nanogpt" and r.checkpoints), None)
    conversion = (
        nanogpt_reference_loss(
            args.nanogpt, Path(check.checkpoints[-1]["path"]), text.read_text(encoding="utf-8")
        )
        if check
        else None
    )
    unscored = {run.name: run.summary() for run in runs}  # kept if the scoring is cut short
    (args.out / "race-unscored.json").write_text(json.dumps(unscored, indent=1))
    score_all(args, runs, text, slots)
    result = {
        "machine": args.machine,
        "text": str(args.text),
        "recipe": recipe,
        "repeats": args.repeats,
        "nanogpt_conversion_check": conversion,
        **summarise(args, runs),
        "runs": {run.name: run.summary() for run in runs},
    }
    (args.out / "race.json").write_text(json.dumps(result, indent=1))
    (args.out / "race.md").write_text(markdown(result))
    for run in runs:
        shutil.copy(run.folder / "log.txt", args.out / f"{run.name}.log")
    print(markdown(result))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
