"""The Fashion-MNIST race: the fast recipe against the baseline recipe to 93.0% test accuracy.

    # everything, on one H200 machine with 16 CPU cores, within 5 minutes (CPU runs cut there):
    python benchmarks/vision_race.py race --data .gpu_data/fashion-mnist --deadline 290 --out race
    # the ablation (the fast recipe less one method at a time) on the GPU:
    python benchmarks/vision_race.py race --parts gpu --recipes fast --drop-each \
        --repeats 2 --data .gpu_data/fashion-mnist --out race-ablation
    python benchmarks/vision_race.py race --smoke --out /tmp/race   # < 1 minute, CPU
    # on a 2-core machine, CPU runs one after another (alternating the recipes):
    python benchmarks/vision_race.py race --parts cpu --one-at-a-time --out race-2core
    # variants of a recipe beside it (each NAME=RECIPE;override;...):
    python benchmarks/vision_race.py race --recipes fast --variant "fast8=fast;max_duration=8ep"

(`benchmarks/time_to_accuracy.py race ...` is the same command.)

Every run is a fresh process (start-up is measured from its launch). CPU runs each get two
cores of their own (taskset), two threads and no GPU (`CUDA_VISIBLE_DEVICES=`), and all run at
the same time; GPU runs go one after another on the remaining cores, alternating the recipes,
while the CPU runs go on (so one call fits in ten minutes; `--parts gpu` alone for a quiet
host). Both sides are scored by one evaluator: the trainer's `Evaluator` with the same metric
(micro accuracy) on the same loader over the full 10,000-image test split, after every epoch,
each with its recipe's evaluation-time methods (EMA weights, flip TTA). A run stops at the
first evaluation at or above the target, at its recipe's budget, or at `--*-time-limit`
training seconds, or when `--deadline` (wall seconds for the whole race) is near: a run cut
short did not reach the target, its time to it is at least the time it trained, and the report
says so (the CPU baseline's 12 epochs take longer than one 5-minute call). GPU runs that
would not fit before the deadline are not started (and reported as skipped). No checkpoints.
"""

from __future__ import annotations

import time

PROCESS_START = time.time()  # before the heavy imports: they are part of the start-up

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from vision_race_report import race_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve().parent / "time_to_accuracy.py"
LAUNCHED = "TESSERA_RACE_LAUNCHED"  # the parent's clock when it started the child
DEADLINE_MARGIN = 15.0  # seconds before the deadline at which runs stop (one evaluation, a write)
GPU_STARTUP = 40.0  # seconds a GPU run needs beyond its training time (start-up, evaluations)
SMOKE = [
    "model.width=8",
    "data.train_subset=2048",
    "data.batch_size=64",
    "max_duration=2ep",
]


@dataclass
class Job:
    name: str
    recipe: str
    seed: int
    device: str
    cores: list[int]
    overrides: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{'gpu' if self.device == 'cuda' else 'cpu'}-{self.name}-seed{self.seed}"


# -- one run (the child process) ---------------------------------------------------------------


def race_eval_data(path: str | None, subset: int | None) -> Any:
    """The one evaluation loader both sides are scored on: the test split, in order."""
    from tessera.data.fashion_mnist import FashionMNIST, collate_ready_batch
    from tessera.data.sampler import make_dataloader

    test = FashionMNIST("test", path)
    if subset is not None:
        test.images, test.labels = test.images[:subset], test.labels[:subset]
    return make_dataloader(test, 1000, shuffle=False, collate_fn=collate_ready_batch)


def command_race_one(args: argparse.Namespace) -> None:
    import torch
    from time_to_accuracy import TrainingClock

    from tessera.algorithms.registry import ALGORITHMS
    from tessera.callbacks.early_stopping import ThresholdStopper
    from tessera.config.build import build_data, build_model, settings_of
    from tessera.config.load import load_config
    from tessera.trainer import Trainer

    class RaceClock(TrainingClock):
        """TrainingClock plus evaluation seconds, seconds since launch and a time limit."""

        def __init__(self, device: torch.device, launched: float, limit: float | None) -> None:
            super().__init__(device)
            self.launched, self.limit = launched, limit
            self.eval_seconds, self.startup = 0.0, 0.0
            self._eval_from = 0.0

        def fit_start(self, state, logger) -> None:
            self.startup = time.time() - self.launched
            super().fit_start(state, logger)

        def eval_start(self, state, logger) -> None:
            super().eval_start(state, logger)
            self._eval_from = time.perf_counter()

        def eval_end(self, state, logger) -> None:
            self._sync()
            self.eval_seconds += time.perf_counter() - self._eval_from
            super().eval_end(state, logger)
            self.curve[-1]["eval_seconds"] = round(self.eval_seconds, 3)
            self.curve[-1]["since_launch"] = round(time.time() - self.launched, 3)

        def batch_end(self, state, logger) -> None:
            if self.limit and self.wall + time.perf_counter() - self._wall_start >= self.limit:
                state.request_stop(f"time limit of {self.limit:.0f} training seconds")
            elif args.stop_at and time.time() >= args.stop_at:
                state.request_stop("the race's deadline")

    launched = float(os.environ.get(LAUNCHED, PROCESS_START))
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    overrides = [*args.set, f"seed={args.seed}"]
    if args.data:
        overrides.append(f"data.path={args.data}")
    config = load_config(ROOT / "recipes" / f"fashion-mnist-{args.recipe}.yaml", overrides)
    clock = RaceClock(device, launched, args.time_limit)
    stopper = ThresholdStopper(monitor="metrics/eval/accuracy", threshold=args.target, stop=True)

    settings = settings_of(config)
    settings.update(
        run_dir=None, eval_interval="1ep", save_interval=None, autoresume=False, device=args.device
    )
    trainer = Trainer(
        build_model(config),
        build_data(config).train,
        eval_data={"eval": race_eval_data(args.data, args.eval_subset)},
        optimizers=config.optimizer,
        schedulers=config.scheduler if config.scheduler is not None else [],
        algorithms=[ALGORITHMS.get(n).from_config(c) for n, c in config.algorithms.items()],
        callbacks=[clock, stopper],
        loggers=[],
        **settings,
    )
    trainer.fit()
    state = trainer.state
    at = next((p for p in clock.curve if p["accuracy"] >= args.target), None)
    result = {
        "name": args.name or args.recipe,
        "recipe": args.recipe,
        "overrides": args.set,
        "seed": args.seed,
        "device": args.device,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "cores": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "algorithms": sorted(config.algorithms),
        "budget": str(config.max_duration),
        "budget_epochs": state.to_unit(state.max_duration, _epoch_unit()),
        "target": args.target,
        "reached": at is not None,
        "train_seconds_to_target": at["seconds"] if at else None,
        "eval_seconds_to_target": at["eval_seconds"] if at else None,
        "since_launch_to_target": at["since_launch"] if at else None,
        "epochs_to_target": at["epoch"] if at else None,
        "startup_seconds": round(clock.startup, 3),
        "train_seconds": round(clock.wall, 3),
        "eval_seconds": round(clock.eval_seconds, 3),
        "epochs_done": state.position(_epoch_unit()),
        "stop_reason": state.stop_reason,
        "best_accuracy": max((p["accuracy"] for p in clock.curve), default=None),
        "curve": clock.curve,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out)


def _epoch_unit():
    from tessera.core.time import TimeUnit

    return TimeUnit.EPOCH


# -- the race (the parent process) -----------------------------------------------------------


def plan(
    args: argparse.Namespace, available: list[int], has_gpu: bool
) -> tuple[list[Job], list[Job]]:
    """(CPU jobs, each on two cores of its own; GPU jobs, in order, on the cores left), from
    the cores this process may use."""
    cpu_count = len(available)
    seeds = list(range(args.repeats))
    variants: list[tuple[str, str, list[str]]] = [(r, r, []) for r in args.recipes]
    for text in args.variant:  # NAME=RECIPE;override;override...
        name, _, rest = text.partition("=")
        recipe, *overrides = rest.split(";")
        if not name or not recipe:
            raise SystemExit(f"--variant {text!r}: expected NAME=RECIPE;key=value;...")
        variants.append((name, recipe, overrides))
    if args.drop_each and not args.recipes:
        raise SystemExit("--drop-each needs a recipe in --recipes (its last one is ablated)")
    if args.drop_each:
        from tessera.config.load import load_config

        fast = load_config(ROOT / "recipes" / f"fashion-mnist-{args.recipes[-1]}.yaml")
        for method in fast.algorithms:
            variants.append(
                (
                    f"{args.recipes[-1]}-no-{method}",
                    args.recipes[-1],
                    [f"algorithms.{method}=false"],
                )
            )
    cpu_jobs: list[Job] = []
    if "cpu" in args.parts:
        width = args.cpu_threads
        for seed in seeds:
            for name, recipe, extra in variants:
                index = 0 if args.one_at_a_time else len(cpu_jobs)
                cores = available[index * width : (index + 1) * width]
                cpu_jobs.append(Job(name, recipe, seed, "cpu", cores, extra))
        if not args.one_at_a_time and len(cpu_jobs) * width > cpu_count:
            print(
                f"note: {len(cpu_jobs)} CPU runs x {width} cores need {len(cpu_jobs) * width} "
                f"cores but this machine has {cpu_count}; the runs share cores (not pinned)",
                flush=True,
            )
            for job in cpu_jobs:
                job.cores = []
    gpu_jobs: list[Job] = []
    if "gpu" in args.parts:
        if not has_gpu:
            print("note: no CUDA device here; the GPU part is skipped", flush=True)
        else:
            used = {core for job in cpu_jobs for core in job.cores}
            rest = [core for core in available if core not in used] or available
            for seed in seeds:  # alternate the sides: drift hits both alike
                for name, recipe, extra in variants:
                    gpu_jobs.append(Job(name, recipe, seed, "cuda", rest, extra))
    return cpu_jobs, gpu_jobs


def child_command(job: Job, args: argparse.Namespace, out: Path) -> list[str]:
    limit = args.cpu_time_limit if job.device == "cpu" else args.gpu_time_limit
    threads = args.cpu_threads if job.device == "cpu" else max(1, min(len(job.cores), 4))
    command = [
        sys.executable, str(SCRIPT), "race-one",
        "--recipe", job.recipe, "--name", job.name, "--seed", str(job.seed),
        "--device", job.device, "--threads", str(threads), "--target", str(args.target),
        "--time-limit", str(limit), "--out", str(out / "runs" / f"{job.label}.json"),
    ]  # fmt: skip
    if args.data:
        command += ["--data", str(args.data)]
    if args.smoke:
        command += ["--eval-subset", "500"]
    if args.deadline:  # children stop themselves in time to write their results
        command += ["--stop-at", repr(args.started + args.deadline - DEADLINE_MARGIN)]
    overrides = [*args.set, *job.overrides, *(SMOKE if args.smoke else [])]
    if overrides:
        command += ["--set", *overrides]
    if job.cores and shutil.which("taskset"):
        command = ["taskset", "-c", ",".join(map(str, job.cores)), *command]
    return command


def start(job: Job, args: argparse.Namespace, out: Path) -> tuple[subprocess.Popen, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    if job.device == "cpu":
        env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=str(args.cpu_threads))
        env["MKL_NUM_THREADS"] = str(args.cpu_threads)
    command = child_command(job, args, out)
    log = open(out / "logs" / f"{job.label}.log", "w")  # noqa: SIM115 (closed in finish)
    log.write(" ".join(command) + "\n")
    log.flush()
    env[LAUNCHED] = repr(time.time())
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return process, log


def finish(job: Job, process: subprocess.Popen, log: Any, timeout: float) -> str:
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
        print(f"{job.label}: killed after {timeout:.0f} s (over its time)", flush=True)
    log.close()
    status = "ok" if code == 0 else f"failed (exit {code}, see logs/{job.label}.log)"
    print(f"{job.label}: {status}", flush=True)
    return status


def command_race(args: argparse.Namespace) -> None:
    import torch

    if args.smoke:
        args.repeats, args.target = 1, 0.5
        args.cpu_time_limit = args.gpu_time_limit = 60.0
        args.cpu_threads = 1
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    if hasattr(os, "sched_getaffinity"):
        available = sorted(os.sched_getaffinity(0))
    else:
        available = list(range(os.cpu_count() or 1))
    cpu_jobs, gpu_jobs = plan(args, available, torch.cuda.is_available())
    started = args.started = time.time()
    statuses: dict[str, str] = {}

    def wait_for(limit: float) -> float:
        """Seconds to wait for a run with this training limit: start-up and evaluations on
        top, and never past the deadline (a run stops itself just before it)."""
        if not args.deadline:
            return limit + 240
        return max(1.0, min(limit + 240, started + args.deadline - time.time()))

    def gpu_run(job: Job) -> None:
        left = started + args.deadline - time.time() if args.deadline else None
        if left is not None and left < min(args.gpu_time_limit, 60.0) + GPU_STARTUP:
            statuses[job.label] = "skipped (not enough time before the deadline)"
            print(f"{job.label}: {statuses[job.label]}", flush=True)
            return
        process, log = start(job, args, out)
        statuses[job.label] = finish(job, process, log, wait_for(args.gpu_time_limit))

    def gpu_part() -> None:
        with ThreadPoolExecutor(args.gpu_parallel) as pool:
            list(pool.map(gpu_run, gpu_jobs))

    gpu_thread = threading.Thread(target=gpu_part)
    gpu_thread.start()
    if args.one_at_a_time:  # on the same cores, one after another (a small machine)
        for job in cpu_jobs:
            statuses[job.label] = finish(job, *start(job, args, out), wait_for(args.cpu_time_limit))
    else:
        running = [(job, *start(job, args, out)) for job in cpu_jobs]
        for job, process, log in running:
            statuses[job.label] = finish(job, process, log, wait_for(args.cpu_time_limit))
    gpu_thread.join()
    runs = []
    for job in [*cpu_jobs, *gpu_jobs]:
        path = out / "runs" / f"{job.label}.json"
        if path.is_file():
            runs.append(json.loads(path.read_text()))
        else:
            print(f"{job.label}: no result ({statuses.get(job.label)})", flush=True)
    payload = {
        "command": "python " + " ".join(sys.argv),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(torch),
        "torch": torch.__version__,
        "target": args.target,
        "smoke": args.smoke,
        "cpu_time_limit": args.cpu_time_limit,
        "gpu_time_limit": args.gpu_time_limit,
        "deadline": args.deadline,
        "gpu_parallel": args.gpu_parallel,
        "wall_seconds": round(time.time() - started, 1),
        "statuses": statuses,
        "runs": runs,
    }
    (out / "race.json").write_text(json.dumps(payload, indent=1))
    report = "\n".join(race_report(payload))
    (out / "race.md").write_text(report + "\n")
    print(report)
    print(f"\nwrote {out / 'race.json'} and {out / 'race.md'} in {payload['wall_seconds']:.0f} s")


def machine(torch: Any) -> str:
    cores = os.cpu_count()
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {cores} CPU cores"
    return f"{cores} CPU cores, no GPU"


def add_parsers(sub: Any) -> None:
    """The `race` and `race-one` sub-commands of benchmarks/time_to_accuracy.py."""
    race = sub.add_parser(
        "race", help="fast vs baseline to 93%: CPU pinned in parallel, GPU in turn"
    )
    race.add_argument("--out", required=True, help="folder for race.json, race.md, runs/, logs/")
    race.add_argument("--recipes", nargs="*", default=["baseline", "fast"])
    race.add_argument("--parts", nargs="+", choices=["cpu", "gpu"], default=["cpu", "gpu"])
    race.add_argument("--repeats", type=int, default=3)
    race.add_argument("--target", type=float, default=0.93)
    race.add_argument("--data", default=None, help="the Fashion-MNIST folder (data.path)")
    race.add_argument("--cpu-threads", type=int, default=2, help="threads and cores per CPU run")
    race.add_argument("--cpu-time-limit", type=float, default=420.0, help="training s per CPU run")
    race.add_argument("--gpu-time-limit", type=float, default=150.0, help="training s per GPU run")
    race.add_argument(
        "--deadline", type=float, default=None, help="wall s for the whole race (runs cut there)"
    )
    race.add_argument(
        "--one-at-a-time",
        action="store_true",
        help="CPU runs one after another on the same cores (a 2-core machine), not all at once",
    )
    race.add_argument(
        "--gpu-parallel",
        type=int,
        default=1,
        help="GPU runs at once (above 1 an accuracy sweep: its times are not race times)",
    )
    race.add_argument(
        "--drop-each", action="store_true", help="add the last recipe less each method"
    )
    race.add_argument("--set", nargs="*", default=[], help="overrides for every run")
    race.add_argument(
        "--variant",
        action="append",
        default=[],
        help="an extra run 'NAME=RECIPE;key=value;...' (RECIPE as in --recipes)",
    )
    race.add_argument("--smoke", action="store_true", help="tiny settings, under a minute on CPU")
    race.set_defaults(func=command_race)
    one = sub.add_parser("race-one", help="one race run (started by `race`)")
    one.add_argument("--recipe", required=True)
    one.add_argument("--name", default=None)
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--device", default="cpu")
    one.add_argument("--threads", type=int, default=2)
    one.add_argument("--target", type=float, default=0.93)
    one.add_argument("--time-limit", type=float, default=None)
    one.add_argument("--stop-at", type=float, default=None, help="unix time to stop training at")
    one.add_argument("--data", default=None)
    one.add_argument("--eval-subset", type=int, default=None)
    one.add_argument("--set", nargs="*", default=[])
    one.add_argument("--out", required=True)
    one.set_defaults(func=command_race_one)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
