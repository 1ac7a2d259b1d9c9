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
import warnings
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from tessera.core.errors import UserError

_console = Console(stderr=True)


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
        warnings.warn(
            f"--nproc {options.nproc} CPU processes on {cpus} cores will be slow", stacklevel=2
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
    try:
        torchrun.run(torchrun.get_args_parser().parse_args(arguments))
    except ChildFailedError as error:
        return _report_failure(error, log_dir)
    return 0


def _report_failure(error: object, log_dir: Path) -> int:
    failures = getattr(error, "failures", {})
    exit_code = 1
    for rank, failure in sorted(failures.items()):
        code = failure.exitcode
        how = f"signal {failure.signal_name()}" if code < 0 else f"exit code {code}"
        _console.print(f"[bold red]rank {rank} failed[/] ({how}, pid {failure.pid})")
        tail = _log_tail(log_dir, failure.local_rank)
        if tail:
            _console.print(tail, markup=False, highlight=False)
        if code == 2:  # a UserError in the worker: bad input, not a crash
            exit_code = 2
    _console.print(f"every rank's output is in {log_dir}")
    return exit_code


def _log_tail(log_dir: Path, local_rank: int, lines: int = 25) -> str:
    """The end of the newest stderr log of `local_rank` (torchrun's attempt_N/RANK layout)."""
    candidates = sorted(
        log_dir.glob(f"*/attempt_*/{local_rank}/stderr.log"), key=lambda p: p.stat().st_mtime
    )
    if not candidates:
        return ""
    text = candidates[-1].read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])
