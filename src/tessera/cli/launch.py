"""`tessera launch RECIPE.yaml [key=value ...]`: start a run that looks after itself.

Here (default): under the watchdog, which restarts it from its newest good checkpoint after a
crash or a hang (`--retries`, `--hang-timeout`). `--slurm`: as a SLURM batch job (the watchdog
runs inside the allocation). `--k8s`: as a Kubernetes JobSet. Every run is recorded in the run
registry; see `tessera runs`. docs/runs.md has the details.
"""

from __future__ import annotations

import argparse
from typing import Any

from tessera.cli.options import COUNT, NON_NEGATIVE, PORT
from tessera.core.errors import UserError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "launch",
        help="start a supervised run: here, on SLURM (--slurm) or Kubernetes (--k8s)",
        description="Start a run that restarts itself from its newest verified checkpoint "
        "after a crash, a kill or a hang, and is recorded in the run registry (tessera runs). "
        "Options may follow the overrides. See docs/runs.md.",
    )
    parser.add_argument("recipe", help="run file (YAML)")
    parser.add_argument(
        "overrides", nargs=argparse.REMAINDER, help="key=value overrides (options may follow)"
    )
    add_launch_options(parser)
    parser.set_defaults(func=run)


def add_launch_options(parser: Any) -> None:
    watch = parser.add_argument_group("watchdog")
    watch.add_argument(
        "--retries", type=NON_NEGATIVE, default=3, help="restarts after failures (3)"
    )
    watch.add_argument(
        "--hang-timeout", default="30m", help="kill and restart after no new step for (30m; off)"
    )
    watch.add_argument(
        "--startup-timeout", default="30m", help="kill and restart if training has not begun by"
    )
    watch.add_argument("--backoff", default="10s", help="wait before the first restart (10s)")
    watch.add_argument("--max-backoff", default="10m", help="longest wait between restarts")
    watch.add_argument(
        "--no-standby",
        dest="standby",
        action="store_false",
        default=True,
        help="do not keep a warm spare process for fast restarts",
    )
    here = parser.add_argument_group("this machine")
    here.add_argument("--nproc", type=COUNT, default=1, help="processes (one per GPU)")
    here.add_argument(
        "--detach", action="store_true", help="run the watchdog in the background and return"
    )
    backend = parser.add_argument_group("cluster back-ends")
    backend.add_argument("--slurm", action="store_true", help="submit as a SLURM batch job")
    backend.add_argument("--k8s", action="store_true", help="write (and apply) a JobSet")
    backend.add_argument("--nodes", type=COUNT, default=None, help="nodes")
    backend.add_argument("--gpus-per-node", type=NON_NEGATIVE, default=None, help="GPUs per node")
    backend.add_argument(
        "--nproc-per-node", type=COUNT, default=None, help="processes per node (default: GPUs)"
    )
    backend.add_argument("--port", type=PORT, default=None, help="rendezvous port on node 0")
    backend.add_argument("--partition", default=None, help="SLURM partition")
    backend.add_argument("--time", default=None, help="SLURM time limit (e.g. 1-00:00)")
    backend.add_argument("--account", default=None, help="SLURM account")
    backend.add_argument(
        "--requeue", action="store_true", default=None, help="SLURM: requeue after node failure"
    )
    backend.add_argument("--cpus-per-task", type=COUNT, default=None, help="SLURM CPUs per node")
    backend.add_argument(
        "--sbatch-arg", dest="sbatch_args", action="append", default=None,
        help="extra #SBATCH line, e.g. --sbatch-arg=--qos=high (repeatable)",
    )  # fmt: skip
    backend.add_argument("--image", default=None, help="Kubernetes: container image")
    backend.add_argument("--namespace", default=None, help="Kubernetes namespace")
    backend.add_argument(
        "--volume-claim", default=None, help="Kubernetes: PersistentVolumeClaim for run_dir"
    )
    backend.add_argument("--manifest", default=None, help="Kubernetes: where to write the YAML")
    backend.add_argument(
        "--no-apply", dest="apply", action="store_false", default=None,
        help="Kubernetes: only write the manifest",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from tessera.cli.train import _split_overrides  # options may follow the overrides
    from tessera.config import load_config
    from tessera.launch.options import WatchPolicy, check_backend_options, parse_duration

    _split_overrides(args, add_launch_options, "tessera launch")
    if args.slurm and args.k8s:
        raise UserError("--slurm and --k8s: choose one back-end")
    backend = "slurm" if args.slurm else "k8s" if args.k8s else "local"
    policy = WatchPolicy(
        retries=args.retries,
        hang_timeout=parse_duration(args.hang_timeout, "--hang-timeout"),
        startup_timeout=parse_duration(args.startup_timeout, "--startup-timeout"),
        backoff=parse_duration(args.backoff, "--backoff") or 0.0,
        max_backoff=parse_duration(args.max_backoff, "--max-backoff") or 0.0,
        standby=args.standby,
    )
    policy.check()
    names = [
        *("nodes", "gpus_per_node", "nproc_per_node", "port", "partition", "time"),
        *("account", "requeue", "cpus_per_task", "sbatch_args", "image", "namespace"),
        *("volume_claim", "manifest", "apply"),
    ]
    given = {name: getattr(args, name) for name in names}
    if backend == "local":
        given.pop("port")
        given.pop("apply")
    elif args.nproc != 1:
        raise UserError(f"--nproc: on --{backend} give --nproc-per-node (per node) instead")
    cluster = check_backend_options(backend, given)
    config = load_config(args.recipe, args.overrides)
    if backend == "local":
        if args.nproc < 1:
            raise UserError(f"--nproc: {args.nproc} is not a process count; give 1 or more")
        from tessera.launch.supervise import supervise_local

        return supervise_local(
            config, args.recipe, list(args.overrides), policy, args.nproc, args.detach
        )
    if args.detach:
        raise UserError(f"--detach: a --{backend} run is already detached; leave it out")
    if backend == "slurm":
        from tessera.launch.slurm import submit

        return submit(config, args.recipe, list(args.overrides), policy, cluster)
    from tessera.launch.kubernetes import deploy

    return deploy(config, args.recipe, list(args.overrides), policy, cluster)
