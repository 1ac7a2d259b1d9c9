"""`tessera runs list|show|logs|stop|resume|rm`: every run the registry knows, as tables."""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "runs",
        help="list, inspect, follow, stop, resume or remove recorded runs",
        description="The run registry ($TESSERA_HOME/registry.db, default ~/.tessera): every "
        "run `tessera train` or `tessera launch` started. RUN is a run's name or id.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="all runs, newest first")
    listing.add_argument("--status", default=None, help="only runs with this status")
    listing.set_defaults(func=_list)
    show = actions.add_parser("show", help="one run: its record and every attempt")
    show.add_argument("run", metavar="RUN")
    show.set_defaults(func=_show)
    logs = actions.add_parser("logs", help="print a run's newest log; -f follows it")
    logs.add_argument("run", metavar="RUN")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing while it runs")
    logs.add_argument("--all", action="store_true", help="every log file, oldest first")
    logs.set_defaults(func=_logs)
    stop = actions.add_parser("stop", help="stop a running run (it can be resumed)")
    stop.add_argument("run", metavar="RUN")
    stop.set_defaults(func=_stop)
    resume = actions.add_parser("resume", help="start a stopped or failed run again")
    resume.add_argument("run", metavar="RUN")
    resume.add_argument(
        "--foreground", action="store_true", help="local runs: supervise here, not detached"
    )
    resume.set_defaults(func=_resume)
    remove = actions.add_parser("rm", help="forget a run (its folder is kept)")
    remove.add_argument("run", metavar="RUN")
    remove.add_argument("--force", action="store_true", help="even while it runs")
    remove.add_argument("--delete-folder", action="store_true", help="also delete the run folder")
    remove.set_defaults(func=_remove)


def _registry() -> Any:
    from tessera.launch.registry import Registry

    return Registry()


def _find(registry: Any, key: str) -> Any:
    from tessera.launch.control import refresh

    return refresh(registry, registry.get(key))


def _when(seconds: float | None) -> str:
    if not seconds:
        return "-"
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def _ago(seconds: float) -> str:
    delta = max(time.time() - seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{delta / size:.0f}{unit} ago"
    return f"{delta:.0f}s ago"


_COLOURS = {"completed": "green", "failed": "red", "stopped": "yellow", "lost": "red"}


def _status(text: str) -> str:
    colour = _COLOURS.get(text, "cyan")
    return f"[{colour}]{text}[/]"


def _loss(metrics: dict[str, Any]) -> str:
    for key in ("loss/train", "metrics/eval/loss", "loss"):
        value = metrics.get(key)
        if isinstance(value, (int, float)):
            return f"{value:.4g}"
    return "-"


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tessera.launch import control

    registry = _registry()
    runs = [control.refresh(registry, run) for run in registry.runs()]
    if args.status:
        runs = [run for run in runs if control.shown_status(run) == args.status]
    table = Table(title=f"runs in {registry.path}", title_justify="left")
    for column in ("id", "name", "status", "back-end", "attempts", "step", "loss", "updated"):
        table.add_column(column, justify="right" if column in ("attempts", "step") else "left")
    table.add_column("run folder", overflow="fold")
    for run in runs:
        problem = control.folder_problem(run)
        step = control.last_step(run)
        backend = run.backend + (f" {run.job_id}" if run.job_id else "")
        table.add_row(
            run.id,
            run.name,
            _status(control.shown_status(run)),
            backend,
            str(len(run.attempts)),
            "-" if step is None else str(step),
            _loss(run.last_metrics),
            _ago(run.updated),
            f"{run.run_folder}" + (" [red](missing)[/]" if problem else ""),
        )
    Console().print(table)
    if not runs:
        print("no runs recorded yet: start one with `tessera train` or `tessera launch`")
    return 0


def _show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tessera.launch import control

    registry = _registry()
    run = _find(registry, args.run)
    console = Console()
    info = Table(show_header=False, title=f"run {run.name} ({run.id})", title_justify="left")
    info.add_column(style="bold")
    info.add_column(overflow="fold")
    step = control.last_step(run)
    rows = [
        ("status", _status(control.shown_status(run))),
        ("reason", run.reason or "-"),
        ("run folder", run.run_folder),
        ("recipe", f"{run.recipe} (sha256 {run.recipe_hash})"),
        ("overrides", " ".join(run.overrides) or "-"),
        ("back-end", run.backend + (f", job {run.job_id}" if run.job_id else "")),
        ("host", run.host + (f", pid {run.pid}" if run.pid else "")),
        ("created", _when(run.created)),
        ("updated", _when(run.updated)),
        ("last step", "-" if step is None else str(step)),
    ]
    rows += [(f"  {key}", f"{value}") for key, value in sorted(run.last_metrics.items())]
    problem = control.folder_problem(run)
    if problem:
        rows.append(("[red]problem[/]", problem))
    for key, value in rows:
        info.add_row(key, value)
    console.print(info)
    attempts = Table(title="attempts", title_justify="left")
    for column in ("#", "started", "ended", "seconds", "cause", "resumed from"):
        attempts.add_column(column, overflow="fold")
    for attempt in run.attempts:
        seconds = f"{attempt.ended - attempt.started:.1f}" if attempt.ended else "-"
        attempts.add_row(
            str(attempt.number),
            _when(attempt.started),
            _when(attempt.ended),
            seconds,
            attempt.cause or ("running" if run.live else "-"),
            attempt.resumed_from or "-",
        )
    console.print(attempts)
    return 0


def _logs(args: argparse.Namespace) -> int:
    from tessera.core.errors import UserError
    from tessera.launch import control

    registry = _registry()
    run = _find(registry, args.run)
    problem = control.folder_problem(run)
    if problem:
        raise UserError(f"RUN: cannot show the logs of run {run.id}: {problem}")
    files = control.log_files(run)
    if not files and not args.follow:
        raise UserError(
            f"RUN: run {run.id} has no log files in {run.folder / 'logs'} (a `tessera train` "
            "started by hand prints to its terminal; its metrics are in metrics.jsonl)"
        )
    newest = control.newest_log(files)
    for path in files if args.all else [newest] if newest else []:
        if args.all:
            print(f"==> {path} <==")
        sys.stdout.write(path.read_text(errors="replace"))
    sys.stdout.flush()
    if args.follow:
        _follow(registry, run, newest)
    return 0


def _follow(registry: Any, run: Any, current: Any) -> None:
    """Print what is appended to the newest log, switching to newer ones, until the run ends."""
    from tessera.launch import control

    offset = current.stat().st_size if current is not None else 0
    quiet_since = time.monotonic()
    while True:
        newest = control.newest_log(control.log_files(run))
        if newest is not None and newest != current:
            current, offset = newest, 0
            print(f"==> {current} <==", flush=True)
        if current is not None:
            with open(current, "rb") as log:
                log.seek(offset)
                data = log.read()
            if data:
                offset += len(data)
                sys.stdout.buffer.write(data)
                sys.stdout.flush()
                quiet_since = time.monotonic()
        if time.monotonic() - quiet_since > 1.0:
            run = control.refresh(registry, registry.run_by_id(run.id))
            if not run.live or control.shown_status(run) == "lost":
                return
            quiet_since = time.monotonic()
        time.sleep(0.2)


def _stop(args: argparse.Namespace) -> int:
    from tessera.launch import control

    registry = _registry()
    print(control.stop(registry, _find(registry, args.run)))
    return 0


def _resume(args: argparse.Namespace) -> int:
    from tessera.launch import control

    registry = _registry()
    return control.resume(registry, _find(registry, args.run), foreground=args.foreground)


def _remove(args: argparse.Namespace) -> int:
    from tessera.launch import control

    registry = _registry()
    run = _find(registry, args.run)
    print(control.remove(registry, run, args.force, args.delete_folder))
    return 0
