"""`tessera eval RUN --tasks ...`: the in-context-learning harness on the command line.

    tessera eval runs/gpt-125m --tasks gauntlet
    tessera eval runs/gpt-125m --tasks piqa,lambada_openai --num-fewshot 0,5 --batch-size 64
    tessera eval --hf path/to/causal-lm --tasks arc_easy --limit 50

Results go to the run folder (or --out) as icl_results.json and icl_results.md, and to the
console as a table. `--nproc N` splits the examples over N processes (one per GPU).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from tessera.cli.options import COUNT, DTYPE_CHOICES, device
from tessera.core.errors import ConfigError


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("in-context-learning tasks (docs/eval.md)")
    group.add_argument(
        "--tasks", help="comma-separated task names or YAML files, or 'gauntlet' (every task)"
    )
    group.add_argument("--num-fewshot", help="shot counts, e.g. 0,5 (default: each task's)")
    group.add_argument("--batch-size", type=COUNT, default=32, help="sequences per forward pass")
    group.add_argument("--limit", type=COUNT, help="only the first N examples of each task")
    group.add_argument("--hf", help="a Hugging Face causal-LM folder to evaluate instead")
    group.add_argument("--tokenizer", help="tokenizer, for a model saved without one")
    group.add_argument(
        "--device", type=device, help="cpu, cuda, cuda:1 (default: a GPU if there is one)"
    )
    group.add_argument(
        "--dtype", default="auto", choices=DTYPE_CHOICES, help="bf16 on GPU, else float32 (auto)"
    )
    group.add_argument("--data-dir", help="folder holding the task JSONL files")
    group.add_argument("--out", help="folder for the results (default: the run folder)")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")
    group.add_argument("--nproc", type=COUNT, default=1, help="processes (one per GPU)")


def parse_shots(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        shots = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--num-fewshot {text!r}: give counts like 0 or 0,5.") from None
    if not shots or any(count < 0 for count in shots):
        raise ConfigError(f"--num-fewshot {text!r}: give counts >= 0, like 0 or 0,5.")
    return shots


def plan(tasks: str, data_dir: str | None = None) -> tuple[list[Any], Any, dict[str, str]]:
    """([(TaskData, shot counts or None)], the gauntlet or None, entry -> task name)."""
    from tessera.eval.gauntlet import is_gauntlet_file, load_gauntlet
    from tessera.eval.tasks import TaskData, load_task

    names = [name.strip() for name in tasks.split(",") if name.strip()]
    if not names:
        raise ConfigError("--tasks is empty; name tasks (piqa,arc_easy) or 'gauntlet'.")
    selected: dict[str, tuple[Any, list[int]]] = {}
    gauntlet, resolved = None, {}
    for name in names:
        if name == "gauntlet" or (
            name.endswith((".yaml", ".yml")) and is_gauntlet_file(Path(name))
        ):
            gauntlet = load_gauntlet(None if name == "gauntlet" else name)
            for entry in gauntlet.entries:
                spec = load_task(entry.task)
                resolved[entry.task] = spec.name
                data, shots = selected.get(spec.name, (None, []))
                data = data or TaskData.load(spec, data_dir)
                selected[spec.name] = (data, sorted({*shots, entry.num_fewshot}))
            continue
        spec = load_task(name)
        data, shots = selected.get(spec.name, (None, []))
        selected[spec.name] = (data or TaskData.load(spec, data_dir), shots or [])
    return [(data, shots or None) for data, shots in selected.values()], gauntlet, resolved


def run_tasks(args: argparse.Namespace) -> int:
    from tessera.core import world
    from tessera.parallel import process_group

    if args.nproc > 1 and not process_group.launched_by_torchrun():
        return _launch(args)
    if args.checkpoint is None and args.hf is None:
        raise ConfigError(
            "give a run folder, final/ folder or checkpoint to evaluate, or --hf PATH."
        )
    shots = parse_shots(args.num_fewshot)
    tasks, gauntlet, names = plan(args.tasks, args.data_dir)
    if not process_group.launched_by_torchrun():
        return _evaluate(args, tasks, gauntlet, names, shots, args.device)
    from tessera.cli.train import _exit_worker  # leaves without gloo's teardown (see there)

    info = process_group.start(device=args.device)
    try:
        code = _evaluate(args, tasks, gauntlet, names, shots, str(info.device))
        world.barrier()
    finally:
        process_group.stop()
    _exit_worker(code)
    return code


def _evaluate(args, tasks, gauntlet, names, shots, device) -> int:
    from tessera.core import world
    from tessera.eval.gauntlet import score_gauntlet
    from tessera.eval.harness import console_progress, evaluate_task
    from tessera.eval.models import load_model
    from tessera.eval.report import markdown, print_tables, results_document, write_results

    model = load_model(args.checkpoint, args.hf, args.tokenizer, device, args.dtype)
    start = time.perf_counter()
    results = []
    with console_progress(not args.no_progress) as progress:
        for data, counts in tasks:
            for count in shots or counts or data.spec.num_fewshot:
                results.append(
                    evaluate_task(model, data, count, args.batch_size, args.limit, progress)
                )
    scored = score_gauntlet(gauntlet, results, names) if gauntlet is not None else None
    if world.get_rank() != 0:
        return 0
    info = {
        "model": str(args.hf or args.checkpoint),
        "batch_size": args.batch_size,
        "limit": args.limit,
        "world_size": world.get_world_size(),
        "seconds": time.perf_counter() - start,
    }
    document = results_document(results, scored, info)
    print_tables(results, scored)
    folder = _results_folder(args)
    if folder is not None:
        json_path, md_path = write_results(folder, document, markdown(results, scored))
        print(f"results: {json_path} and {md_path}")
    else:
        print("results were not saved: pass --out FOLDER to keep them")
    return 0


def _results_folder(args: argparse.Namespace) -> Path | None:
    if args.out:
        return Path(args.out)
    if args.hf or args.checkpoint is None:
        return None
    path = Path(args.checkpoint)
    if path.is_file():  # RUN/checkpoints/ep0-ba10.pt
        return path.parent.parent
    if path.name == "final":
        return path.parent
    return path


def _launch(args: argparse.Namespace) -> int:
    """Start `tessera eval` on `--nproc` processes through torchrun's elastic agent."""
    import tempfile

    from tessera.launch.local import LaunchOptions, launch

    argv = [args.checkpoint] if args.checkpoint else []
    for flag in (
        "tasks",
        "num_fewshot",
        "batch_size",
        "limit",
        "hf",
        "tokenizer",
        "device",
        "dtype",
        "data_dir",
        "out",
    ):
        value = getattr(args, flag)
        if value is not None:
            argv += [f"--{flag.replace('_', '-')}", str(value)]
    if args.no_progress:
        argv.append("--no-progress")
    folder = _results_folder(args) or Path(tempfile.mkdtemp(prefix="tessera-eval-"))
    return launch(argv[0], argv[1:], LaunchOptions(nproc=args.nproc), folder, command="eval")
