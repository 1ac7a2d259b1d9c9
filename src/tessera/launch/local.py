"""`tessera train RECIPE.yaml --nproc N`: start N training processes per node through
torchrun's elastic agent (`torch.distributed.run`), the same engine `torchrun` uses.

Each process runs `python -m tessera.cli train RECIPE.yaml ...`, so starting it with `torchrun`
(or `srun`, or a Kubernetes PyTorchJob) directly does the same thing. Every rank's output goes
to `RUN_FOLDER/logs/`; the console shows rank 0, and when a rank fails, its error. With
`--max-restarts N` the agent restarts the whole group after a failure and the run resumes from
its last checkpoint.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from tessera.core.errors import UserError
from tessera.launch.agent_log import agent_messages, classify, describe_exit

_console = Console(stderr=True, soft_wrap=True)


@dataclass(frozen=True)
class LaunchOptions:
    """Where and how many processes to start (torchrun's options, with Tessera's names)."""

    nproc: int = 1
    nnodes: str = "1"
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None
    rdzv_endpoint: str | None = None
    rdzv_id: str | None = None
    max_restarts: int = 0

    @property
    def single_node(self) -> bool:
        return self.nnodes in ("1", "1:1")

    def check_counts(self) -> None:
        if self.nproc < 1:
            raise UserError(f"--nproc: {self.nproc} is not a process count; give 1 or more")
        if self.max_restarts < 0:
            raise UserError("--max-restarts: give 0 (no restarts) or a positive number")

    def wants_launcher(self) -> bool:
        """Whether these options ask for more than the one process already running."""
        return (
            self.nproc > 1
            or not self.single_node
            or self.max_restarts > 0
            or self.rdzv_endpoint is not None
            or self.master_addr is not None
        )


def check_options(options: LaunchOptions, device: str | None) -> None:
    """Refuse what cannot start, before any process is spawned: say which flag to change."""
    import torch

    uses_gpu = device is None or device.startswith("cuda")
    if uses_gpu and torch.cuda.is_available() and options.nproc > torch.cuda.device_count():
        raise UserError(
            f"--nproc {options.nproc} asks for more processes than the "
            f"{torch.cuda.device_count()} GPU(s) visible on this node; use "
            f"--nproc {torch.cuda.device_count()} (one per GPU), or device=cpu for CPU processes"
        )
    if device is not None and device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            f"device={device} but no CUDA GPU is visible on this node; use device=cpu "
            "(gloo backend) or run on a GPU machine"
        )
    cpus = os.cpu_count() or 1
    if not (uses_gpu and torch.cuda.is_available()) and options.nproc > cpus:
        _console.print(
            f"[yellow]tessera[/]: --nproc {options.nproc} CPU processes on {cpus} cores will "
            "be slow"
        )
    if not options.single_node and options.rdzv_endpoint is None and options.master_addr is None:
        raise UserError(
            f"--nnodes {options.nnodes}: a multi-node run needs a meeting point; give "
            "--rdzv-endpoint HOST:PORT (elastic, any node may be HOST) or --master-addr HOST "
            "--master-port PORT with --node-rank on each node"
        )
    if options.master_port is not None and options.node_rank == 0:
        host = options.master_addr or "127.0.0.1"
        if _is_local(host) and not _port_free(host, options.master_port):
            raise UserError(
                f"--master-port {options.master_port}: the port is already in use on {host} "
                "(another run?); choose another port, or leave --master-port out on a single "
                "node to let Tessera pick a free one"
            )


def check_world(config: Any, options: LaunchOptions) -> None:
    """Refuse what cannot work at this launch's world size before any process starts (each
    rank would otherwise find the same problem, and say it, after torchrun has started)."""
    import torch

    from tessera.core.errors import ConfigError
    from tessera.data.registry import DataContext, per_rank_batch_size
    from tessera.parallel.process_group import choose_backend

    problems: list[str] = []
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        choose_backend(config.parallelism.backend, torch.device(device.split(":")[0]))
    except ConfigError as error:
        problems.append(str(error))
    batch_size = getattr(config.data, "batch_size", None)
    parallelism = config.parallelism
    for world_size in _world_sizes(options):
        if isinstance(batch_size, int):
            try:
                per_rank_batch_size(batch_size, DataContext(world_size=world_size))
            except ConfigError as error:
                problems.append(f"{error} (--nproc {options.nproc} x --nnodes {options.nnodes})")
        group = parallelism.shard_group_size or options.nproc
        if (
            parallelism.strategy == "fsdp"
            and parallelism.sharding == "hybrid"
            and world_size % group
        ):
            problems.append(
                f"parallelism.shard_group_size: {group} does not divide the world size "
                f"{world_size}; use a divisor of it (usually --nproc, the processes per node)"
            )
    if problems:
        raise ConfigError("; ".join(dict.fromkeys(problems)))


def _world_sizes(options: LaunchOptions) -> list[int]:
    """Every world size the launch can have (an elastic MIN:MAX node range gives several)."""
    low, _, high = options.nnodes.partition(":")
    try:
        nodes = range(int(low), int(high or low) + 1)
    except ValueError:
        return []  # torchrun itself refuses a malformed --nnodes
    return [options.nproc * count for count in nodes]


def _is_local(host: str) -> bool:
    if host in ("localhost", "127.0.0.1", "0.0.0.0", socket.gethostname()):
        return True
    try:
        return socket.gethostbyname(host).startswith("127.")
    except OSError:
        return False


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("" if host == "0.0.0.0" else host, port))
        except OSError:
            return False
    return True


def torchrun_arguments(options: LaunchOptions, log_dir: Path, program: list[str]) -> list[str]:
    """The `torch.distributed.run` command line for these options."""
    arguments = [
        f"--nproc-per-node={options.nproc}",
        f"--nnodes={options.nnodes}",
        f"--max-restarts={options.max_restarts}",
        f"--log-dir={log_dir}",
        "--redirects=3",  # every rank's stdout and stderr into log_dir
        "--tee=3",  # ... and to the console,
        "--local-ranks-filter=0",  # of local rank 0 only
    ]
    if options.rdzv_endpoint is not None:
        arguments += [
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={options.rdzv_endpoint}",
            f"--rdzv-id={options.rdzv_id or 'tessera'}",
        ]
    elif options.master_addr is not None or options.master_port is not None:
        arguments += [
            f"--node-rank={options.node_rank}",
            f"--master-addr={options.master_addr or '127.0.0.1'}",
            f"--master-port={options.master_port or 29500}",
        ]
    else:  # one node: a private rendezvous on a free local port
        arguments.append("--standalone")
    return [*arguments, "--module", *program]


def launch(
    recipe: str,
    overrides: list[str],
    options: LaunchOptions,
    run_folder: Path,
    command: str = "train",
) -> int:
    """Run `tessera COMMAND` (train, or eval) on every process; returns the exit code."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    log_dir = run_folder / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    program = ["tessera.cli", command, recipe, *overrides]
    arguments = torchrun_arguments(options, log_dir, program)
    _console.print(
        f"[bold]tessera[/]: {options.nproc} process(es) per node x {options.nnodes} node(s); "
        f"every rank's log in {log_dir}"
    )
    # torchrun sets 1 thread per process itself, with a banner on every run; say it here once
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        with agent_messages(_console, options.single_node):
            torchrun.run(torchrun.get_args_parser().parse_args(arguments))
    except ChildFailedError as error:
        return _report_failure(error, log_dir, options.single_node)
    return 0


def _report_failure(error: object, log_dir: Path, single_node: bool = True) -> int:
    """One line per rank that failed (with its error, once), one for the ranks the agent
    stopped because of it; exit code 2 when the failure was bad input (a UserError)."""
    failures = getattr(error, "failures", {})
    failed, stopped = classify(failures)
    shown = {_last_error(log_dir, 0)}  # local rank 0's output is on the console already (tee)
    for rank in failed:
        failure = failures[rank]
        verb = "died" if failure.exitcode < 0 else "failed"
        _console.print(
            f"[bold red]rank {rank} {verb}[/] ({describe_exit(failure.exitcode)}, "
            f"pid {failure.pid})"
        )
        text = _last_error(log_dir, failure.local_rank)
        if text and text not in shown:
            _console.print(text, markup=False, highlight=False)
            shown.add(text)
    if stopped:
        names = ", ".join(str(rank) for rank in stopped)
        _console.print(
            f"rank{'s' if len(stopped) > 1 else ''} {names} stopped by the launcher (SIGTERM) "
            "because of it"
        )
    _console.print(f"every rank's output is in {log_dir}")
    bad_input = any(failures[rank].exitcode == 2 for rank in failed)
    return 2 if bad_input else 1  # 2: a UserError in the worker, bad input rather than a crash


def _last_error(log_dir: Path, local_rank: int, lines: int = 25) -> str:
    """What the newest stderr log of `local_rank` ends with (torchrun's attempt_N/RANK
    layout): its 'error: ...' paragraph, else its last lines."""
    candidates = sorted(
        log_dir.glob(f"*/attempt_*/{local_rank}/stderr.log"), key=lambda p: p.stat().st_mtime
    )
    if not candidates:
        return ""
    text = candidates[-1].read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(text) if line.startswith("error: ")]
    return "\n".join(text[starts[-1] :] if starts else text[-lines:]).strip()
