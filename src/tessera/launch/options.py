"""What `tessera launch` was asked for: the watchdog's policy and each back-end's options,
checked before anything starts, with errors that name the option to change."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tessera.core.errors import UserError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
BACKENDS = ("local", "slurm", "k8s")


def parse_duration(text: str | float | None, option: str) -> float | None:
    """Wall-clock seconds from '90s', '10m', '1.5h', '2d', '250ms' or a bare number of
    seconds; 'off', 'none' and '0' mean no limit (None)."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return float(text) if text > 0 else None
    if text.strip().lower() in ("off", "none", "0"):
        return None
    match = _DURATION.match(text)
    if not match:
        raise UserError(
            f"{option}: {text!r} is not a duration; give a number with a unit, e.g. 90s, 10m, "
            "1.5h, 2d (or 'off')"
        )
    return float(match.group(1)) * _SECONDS[match.group(2) or "s"]


@dataclass(frozen=True)
class WatchPolicy:
    """How the watchdog treats failures: retries, backoff, and what counts as hung."""

    retries: int = 3
    hang_timeout: float | None = None  # seconds without a new step; None: never
    startup_timeout: float | None = 1800.0  # seconds from start to the first heartbeat
    backoff: float = 10.0  # seconds before the first restart; doubles per failure in a row
    max_backoff: float = 600.0
    standby: bool = True  # keep a warm spare process for fast restarts (one process only)

    def check(self) -> None:
        if self.retries < 0:
            raise UserError(
                f"--retries: {self.retries} is not a number of retries; give 0 (fail on the "
                "first error) or more"
            )
        if self.backoff < 0 or self.max_backoff < self.backoff:
            raise UserError(
                f"--backoff {self.backoff}s / --max-backoff {self.max_backoff}s: give a "
                "backoff of 0 or more and a maximum at least as large"
            )

    def delay(self, failures_in_a_row: int) -> float:
        """Seconds to wait before the next attempt: backoff x 2^(failures in a row - 1)."""
        return min(self.backoff * 2 ** max(failures_in_a_row - 1, 0), self.max_backoff)


_SLURM_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^\d+-\d+$|^(infinite|UNLIMITED)$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class ClusterOptions:
    """Options of the SLURM and Kubernetes back-ends (each says which apply to it)."""

    nodes: int = 1
    gpus_per_node: int = 0
    nproc_per_node: int | None = None  # default: gpus_per_node, or 1 on CPU nodes
    port: int | None = None  # default: 29500 + job id % 1000 on SLURM, 29500 on Kubernetes
    # SLURM
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    requeue: bool = False
    cpus_per_task: int | None = None
    sbatch_args: list[str] = field(default_factory=list)
    # Kubernetes
    image: str | None = None
    namespace: str | None = None
    volume_claim: str | None = None
    mount: str = "/runs"
    manifest: str | None = None
    apply: bool = True

    @property
    def processes_per_node(self) -> int:
        return self.nproc_per_node or max(self.gpus_per_node, 1)


SLURM_ONLY = ("partition", "time", "account", "requeue", "cpus_per_task", "sbatch_args")
K8S_ONLY = ("image", "namespace", "volume_claim", "manifest")
CLUSTER_ONLY = ("nodes", "gpus_per_node", "nproc_per_node")


def check_backend_options(backend: str, given: dict[str, Any]) -> ClusterOptions:
    """Refuse options of another back-end; return the checked cluster options."""
    flag = {name: "--" + name.replace("_", "-") for name in given}
    flag["sbatch_args"] = "--sbatch-arg"
    flag["volume_claim"] = "--volume-claim"
    misplaced = {
        "local": [*SLURM_ONLY, *K8S_ONLY, *CLUSTER_ONLY],
        "slurm": list(K8S_ONLY),
        "k8s": list(SLURM_ONLY),
    }[backend]
    wrong = [flag[name] for name in misplaced if given.get(name) not in (None, False, [])]
    if wrong:
        where = {"local": "this machine", "slurm": "--slurm", "k8s": "--k8s"}[backend]
        owners = ", ".join(f"{f} ({_owner(f)})" for f in wrong)
        raise UserError(
            f"{', '.join(wrong)}: not an option of {where}; these belong to {owners}. "
            "Choose the back-end with --slurm or --k8s, or remove the option"
        )
    options = ClusterOptions(**{k: v for k, v in given.items() if v is not None})
    if options.nodes < 1:
        raise UserError(f"--nodes: {options.nodes} is not a node count; give 1 or more")
    if options.gpus_per_node < 0:
        raise UserError(f"--gpus-per-node: {options.gpus_per_node}; give 0 (CPU) or more")
    if options.nproc_per_node is not None and options.nproc_per_node < 1:
        raise UserError(f"--nproc-per-node: {options.nproc_per_node}; give 1 or more")
    if options.time is not None and not _SLURM_TIME.match(options.time):
        raise UserError(
            f"--time: {options.time!r} is not a SLURM time limit; give MINUTES, HH:MM:SS, "
            "D-HH, D-HH:MM or D-HH:MM:SS (e.g. 1-00:00 for one day)"
        )
    if backend == "k8s":
        if not options.image:
            raise UserError("--image: --k8s needs the container image to run, e.g. my/image:tag")
        if options.namespace is not None and not _K8S_NAME.match(options.namespace):
            raise UserError(f"--namespace: {options.namespace!r} is not a Kubernetes name")
    return options


def _owner(flag: str) -> str:
    name = flag[2:].replace("-", "_")
    if name == "sbatch_arg":
        name = "sbatch_args"
    if name in SLURM_ONLY:
        return "--slurm"
    if name in K8S_ONLY:
        return "--k8s"
    return "--slurm or --k8s"
