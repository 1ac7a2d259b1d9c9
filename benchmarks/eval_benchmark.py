"""In-context-learning evaluation: Tessera's harness vs lm-evaluation-harness's `hf` backend.

One run, one machine, one model:
  1. train a GPT (gpt-125m shape on the GPU; tiny with --smoke) with `tessera train` for a few
     minutes on a text file, the `icl_evaluation` callback scoring tasks during training: its
     time as a share of the run;
  2. export it with `tessera export hf`;
  3. speed: the gauntlet's log-likelihood tasks at their gauntlet shot counts, Tessera then
     lm-eval (bf16 on GPU, same batch size, same examples): wall time and examples/s;
  4. agreement: lambada_openai, piqa, arc_easy, winogrande, copa at 0 and 5 shots in fp32:
     per-task accuracy difference and per-example log-likelihood difference.
Writes eval_benchmark.json and eval_benchmark.md into --out.

    python benchmarks/eval_benchmark.py --smoke --out /tmp/eval-smoke      # CPU, < 1 minute
    python benchmarks/eval_benchmark.py --text input.txt --out results/     # one GPU, ~5 min
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
SPEED_TASKS = [  # (task, shots): the gauntlet without gsm8k (generation: lm-eval's `hf`
    # generate is a different loop; see docs/eval.md)
    ("jeopardy", 3),
    ("arc_easy", 5),
    ("arc_challenge", 5),
    ("piqa", 5),
    ("openbook_qa", 5),
    ("commonsense_qa", 5),
    ("copa", 0),
    ("lambada_openai", 0),
    ("winograd_wsc", 5),
    ("winogrande", 5),
    ("boolq", 5),
]
AGREEMENT_TASKS = ["lambada_openai", "piqa", "arc_easy", "winogrande", "copa"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU, < 1 minute")
    parser.add_argument("--out", required=True, help="folder for the JSON and markdown")
    parser.add_argument("--text", help="training text (default: tinyshakespeare beside the repo)")
    parser.add_argument("--train-batches", type=int, default=300, help="64 x 1024 tokens each")
    parser.add_argument("--batch-size", type=int, default=64, help="eval batch size (both)")
    parser.add_argument("--speed-limit", type=int, default=None, help="examples per task")
    parser.add_argument("--agreement-limit", type=int, default=None, help="examples per task")
    parser.add_argument("--skip-lm-eval", action="store_true")
    parser.add_argument(
        "--lm-eval-cudnn",
        action="store_true",
        help="let lm-eval use cuDNN attention (its default; slow on new lengths in torch 2.11); "
        "by default both harnesses run with the flash/efficient/math backends only",
    )
    args = parser.parse_args()
    if args.smoke:
        args.train_batches = min(args.train_batches, 8)
        args.batch_size = 16
        args.speed_limit = args.speed_limit or 4
        args.agreement_limit = args.agreement_limit or 4
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    os.environ.setdefault("HF_DATASETS_CACHE", str(out / "hf-datasets"))
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    report: dict[str, Any] = {
        "machine": platform.processor() or platform.machine(),
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "smoke": args.smoke,
    }
    run = train(args, out, device, report)
    save(report, out)
    hf = out / "hf"
    from tessera.cli.main import main as tessera

    assert tessera(["export", "hf", str(run), str(hf)]) == 0
    report["speed"] = speed(args, run, hf, device, out)
    save(report, out)  # each phase is kept even if a later one runs out of time
    report["agreement"] = agreement(args, run, hf, device, out)
    save(report, out)
    print(markdown(report))


def save(report: dict[str, Any], out: Path) -> None:
    (out / "eval_benchmark.json").write_text(json.dumps(report, indent=1))
    (out / "eval_benchmark.md").write_text(markdown(report))


def default_text() -> Path:
    """tinyshakespeare beside the evaluation data (the data search path), or .peers/."""
    from tessera.core.errors import DataError
    from tessera.eval.data import find_eval_file

    candidates = [ROOT / ".peers" / "input.txt"]
    try:
        data_root = find_eval_file("piqa.jsonl").parent.parent
        candidates.insert(0, data_root / "tinyshakespeare" / "input.txt")
    except DataError:
        pass
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise SystemExit("no training text: pass --text FILE")


def train(args: argparse.Namespace, out: Path, device: str, report: dict[str, Any]) -> Path:
    """Train with `tessera train` (ICL evaluation during training); returns the run folder."""
    from tessera.cli.main import main as tessera
    from tessera.data.text.tokenizers import BPETokenizer

    text = Path(args.text) if args.text else default_text()
    tokenizer_file = out / "tokenizer.json"
    BPETokenizer.train([text], 512 if args.smoke else 8192).save(tokenizer_file)
    if args.smoke:
        shape = {"n_layer": 2, "n_head": 2, "d_model": 64, "max_seq_len": 256}
        seq_len, batch, interval, limit = 128, 8, "6ba", 8
    else:  # gpt-125m's shape; the vocabulary padded to GPT-2's 50,304 rows
        shape = {"preset": "gpt-125m", "vocab_size": 50304, "max_seq_len": 1024}
        seq_len, batch, interval, limit = 1024, 64, f"{args.train_batches // 2}ba", 1000
    tasks = ["piqa", "arc_easy", "lambada_openai"]
    recipe = {
        "name": "model",
        "run_dir": str(out / "runs"),
        "seed": 0,
        "max_duration": f"{args.train_batches}ba",
        "eval_interval": "100000ba",
        "save_interval": None,
        "precision": "amp_bf16" if device == "cuda" else "fp32",
        "device": device,
        "model": {"name": "gpt", "tokenizer": str(tokenizer_file), **shape},
        "data": {
            "name": "text",
            "text": str(text),
            "tokenizer": str(tokenizer_file),
            "seq_len": seq_len,
            "batch_size": batch,
        },
        "optimizer": {
            "name": "adamw",
            "lr": 6e-4 if not args.smoke else 3e-3,
            "betas": [0.9, 0.95],
            "weight_decay": 0.1,
        },
        "scheduler": {"name": "cosine_warmup", "t_warmup": "0.05dur", "alpha_f": 0.1},
        "callbacks": {
            "icl_evaluation": {
                "tasks": tasks,
                "interval": interval,
                "limit": limit,
                "num_fewshot": 0,
                "batch_size": args.batch_size,
            },
            "speed_monitor": {},
        },
        "loggers": {"jsonl": {}},
    }
    path = out / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    start = time.perf_counter()
    assert tessera(["train", str(path)]) == 0
    seconds = time.perf_counter() - start
    folder = out / "runs" / "model"
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    icl_seconds = max(r.get("time/icl_eval_seconds", 0.0) for r in rows)
    icl = [r for r in rows if "time/icl_eval_seconds" in r]
    report["training"] = {
        "shape": shape,
        "batches": args.train_batches,
        "seq_len": seq_len,
        "batch": batch,
        "seconds": round(seconds, 1),
        "icl_eval_seconds": round(icl_seconds, 1),
        "icl_eval_share": round(icl_seconds / seconds, 4),
        "icl_evaluations": len(icl),
        "icl_tasks": tasks,
        "icl_limit": limit,
        "last_icl": {k: v for k, v in (icl[-1] if icl else {}).items() if k.startswith("metrics")},
    }
    print(json.dumps(report["training"]), flush=True)
    return folder


def tessera_run(
    run: Path,
    tasks: list[tuple[str, int]],
    device: str,
    dtype: str,
    batch_size: int,
    limit: int | None,
) -> tuple[list[Any], float]:
    """Load the model and the task files, score every task: the wall time of all of it (as
    lm-eval's time includes loading its model and data sets)."""
    from tessera.eval.harness import evaluate_task
    from tessera.eval.models import load_model
    from tessera.eval.tasks import TaskData, load_task

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    model = load_model(str(run), device=device, dtype=dtype)
    results = [
        evaluate_task(model, TaskData.load(load_task(name)), shots, batch_size, limit)
        for name, shots in tasks
    ]
    return results, time.perf_counter() - start


def lm_eval_run(
    hf: Path,
    configs: list[dict],
    folder: Path,
    device: str,
    dtype: str,
    batch_size: int,
    limit: int | None,
    samples: bool,
    cudnn: bool = False,
) -> tuple[dict, float]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    folder.mkdir(parents=True, exist_ok=True)
    for config in configs:
        (folder / f"{config['task']}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    start = time.perf_counter()
    with _attention(cudnn):
        output = lm_eval.simple_evaluate(
            model="hf",
            model_args=f"pretrained={hf},dtype={dtype}",
            tasks=[c["task"] for c in configs],
            batch_size=batch_size,
            limit=limit,
            device=device,
            log_samples=samples,
            task_manager=TaskManager(include_path=str(folder), include_defaults=False),
        )
    return output, time.perf_counter() - start


def _attention(cudnn: bool) -> Any:
    """The attention backends Tessera's harness uses, unless lm-eval may keep its default."""
    import contextlib

    from torch.nn.attention import sdpa_kernel

    from tessera.eval.models import ATTENTION_BACKENDS

    return contextlib.nullcontext() if cudnn else sdpa_kernel(ATTENTION_BACKENDS)


def speed(args: argparse.Namespace, run: Path, hf: Path, device: str, out: Path) -> dict:
    from tessera.eval.lm_eval_tasks import lm_eval_config
    from tessera.eval.tasks import TaskData, load_task

    dtype = "bfloat16" if device == "cuda" else "float32"
    tessera_run(run, SPEED_TASKS[:1], device, dtype, args.batch_size, 2)  # warm-up (CUDA)
    results, seconds = tessera_run(
        run, SPEED_TASKS, device, dtype, args.batch_size, args.speed_limit
    )
    examples = sum(r.examples for r in results)
    row: dict[str, Any] = {
        "tasks": [f"{t}/{s}" for t, s in SPEED_TASKS],
        "dtype": dtype,
        "examples": examples,
        "tessera_seconds": round(seconds, 2),
        "tessera_examples_per_s": round(examples / seconds, 1),
        "tessera_truncated": sum(r.truncated for r in results),
        "tessera_metrics": {r.label: r.metrics for r in results},
    }
    print(json.dumps({k: v for k, v in row.items() if k != "tessera_metrics"}), flush=True)
    if args.skip_lm_eval or not _has_lm_eval():
        row["lm_eval"] = "not run (lm-eval not installed or --skip-lm-eval)"
        return row
    configs = [lm_eval_config(TaskData.load(load_task(n)), shots) for n, shots in SPEED_TASKS]
    output, lm_seconds = lm_eval_run(
        hf,
        configs,
        out / "lm-eval-speed",
        device,
        dtype,
        args.batch_size,
        args.speed_limit,
        samples=False,
        cudnn=args.lm_eval_cudnn,
    )
    row["lm_eval_attention"] = "default (cuDNN allowed)" if args.lm_eval_cudnn else "no cuDNN"
    row["lm_eval_seconds"] = round(lm_seconds, 2)
    row["lm_eval_examples_per_s"] = round(examples / lm_seconds, 1)
    row["speedup"] = round(lm_seconds / seconds, 2)
    row["lm_eval_metrics"] = {
        name: {k.split(",")[0]: v for k, v in values.items() if "," in k and "stderr" not in k}
        for name, values in output["results"].items()
    }
    print(json.dumps({k: row[k] for k in ("lm_eval_seconds", "speedup")}), flush=True)
    return row


def agreement(args: argparse.Namespace, run: Path, hf: Path, device: str, out: Path) -> dict:
    """fp32 on both sides (TF32 off): metric differences and log-likelihood differences."""
    from tessera.eval.lm_eval_tasks import lm_eval_config
    from tessera.eval.tasks import TaskData, load_task

    if args.skip_lm_eval or not _has_lm_eval():
        return {"status": "not run (lm-eval not installed or --skip-lm-eval)"}
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    names = [(n, s) for n in AGREEMENT_TASKS for s in (0, 5)]
    plan = [(TaskData.load(load_task(n)), s) for n, s in names]
    results, seconds = tessera_run(
        run, names, device, "float32", args.batch_size, args.agreement_limit
    )
    configs = [lm_eval_config(task, shots) for task, shots in plan]
    output, lm_seconds = lm_eval_run(
        hf,
        configs,
        out / "lm-eval-agree",
        device,
        "float32",
        args.batch_size,
        args.agreement_limit,
        samples=True,
    )
    rows = []
    for (task, shots), result, config in zip(plan, results, configs):
        theirs = output["results"][config["task"]]
        samples = {s["doc_id"]: s for s in output["samples"][config["task"]]}
        worst, over = 0.0, 0
        for index, outcome in enumerate(result.outcomes):
            ours = outcome.get("loglikelihoods") or [outcome["loglikelihood"]]
            reference = [float(r[0][0]) for r in samples[index]["resps"]]
            gap = max(abs(a - b) for a, b in zip(ours, reference))
            worst, over = max(worst, gap), over + (gap > 1e-3)
        metric = "acc"
        rows.append(
            {
                "task": f"{task.spec.name}/{shots}",
                "examples": result.examples,
                "tessera_acc": result.metrics[metric],
                "lm_eval_acc": theirs[f"{metric},none"],
                "acc_points_apart": round(
                    100 * abs(result.metrics[metric] - theirs[f"{metric},none"]), 3
                ),
                "max_loglikelihood_gap": worst,
                "examples_over_1e-3": over,
            }
        )
    return {
        "dtype": "float32",
        "tessera_seconds": round(seconds, 2),
        "lm_eval_seconds": round(lm_seconds, 2),
        "tasks": rows,
    }


def _has_lm_eval() -> bool:
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        print("lm-eval is not installed: its half of the comparison is skipped", file=sys.stderr)
        return False
    return True


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# ICL evaluation benchmark ({report['device']}, torch {report['torch']})", ""]
    t = report["training"]
    lines += [
        f"Training: {t['batches']} batches of {t['batch']}x{t['seq_len']} in {t['seconds']} s;"
        f" in-training ICL evaluation ({', '.join(t['icl_tasks'])}, {t['icl_limit']} "
        f"examples each, {t['icl_evaluations']}x): {t['icl_eval_seconds']} s = "
        f"{100 * t['icl_eval_share']:.1f}% of the run.",
        "",
    ]
    s = report.get("speed")
    if s is None:
        return "\n".join(lines) + "\n"
    lines += [
        "| harness | examples | wall s | examples/s |",
        "| --- | --- | --- | --- |",
        f"| Tessera ({s['dtype']}) | {s['examples']} | {s['tessera_seconds']} | "
        f"{s['tessera_examples_per_s']} |",
    ]
    if "lm_eval_seconds" in s:
        lines.append(
            f"| lm-eval hf ({s['dtype']}) | {s['examples']} | {s['lm_eval_seconds']} | "
            f"{s['lm_eval_examples_per_s']} |"
        )
        lines += [
            "",
            f"Speed-up: **{s['speedup']}x** at batch size {report['batch_size']} (lm-eval's "
            f"attention: {s['lm_eval_attention']}; wall times include loading model and data).",
        ]
    a = report.get("agreement", {})
    if "tasks" in a:
        lines += [
            "",
            "| task/shots | examples | Tessera acc | lm-eval acc | points apart | "
            "max ll gap | examples > 1e-3 |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in a["tasks"]:
            lines.append(
                f"| {row['task']} | {row['examples']} | {row['tessera_acc']:.4f} | "
                f"{row['lm_eval_acc']:.4f} | {row['acc_points_apart']} | "
                f"{row['max_loglikelihood_gap']:.2e} | {row['examples_over_1e-3']} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
