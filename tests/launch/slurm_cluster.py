"""A real single-node SLURM for the tests: munged, slurmctld and slurmd from Debian's packages,
configured in a temporary folder, started as daemons, stopped by their pid files.

Needs root (slurmd runs jobs as their users) and the packages `slurmctld slurmd slurm-client
munge`; .ci/run installs them. Settings follow shared/notes/slurm-single-node.md.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "srun")


def missing_programs() -> list[str]:
    return [name for name in PROGRAMS if shutil.which(name) is None]


@dataclass
class Cluster:
    root: Path
    conf: Path
    pid_files: list[Path]

    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}


def _config(root: Path, munge_socket: Path) -> str:
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    return "\n".join(
        [
            "ClusterName=tessera-test",
            f"SlurmctldHost={host}(127.0.0.1)",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={munge_socket}",
            "SlurmUser=root",
            "SlurmctldPort=46817",
            "SlurmdPort=46818",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={root / 'jobcomp.txt'}",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "MpiDefault=none",
            "ReturnToService=2",
            "MailProg=/bin/true",
            "KillWait=5",
            "MinJobAge=300",
            "SchedulerType=sched/backfill",
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN",
            f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def start(timeout: float = 30.0) -> Cluster:
    """Start munged, slurmctld and slurmd; return once the node is idle."""
    # munged runs as the munge user, which cannot enter pytest's private temporary folders.
    root = Path(tempfile.mkdtemp(prefix="tessera-slurm-"))
    root.chmod(0o755)
    munge = root / "munge"
    munge.mkdir(mode=0o755)
    user = pwd.getpwnam("munge")
    os.chown(munge, user.pw_uid, user.pw_gid)
    for name in ("state", "spool"):
        (root / name).mkdir()
    socket_path = munge / "munge.socket"
    conf = root / "slurm.conf"
    conf.write_text(_config(root, socket_path))
    pid_files = [munge / "munged.pid", root / "slurmctld.pid", root / "slurmd.pid"]
    cluster = Cluster(root, conf, pid_files)
    env = {**os.environ, **cluster.env()}
    try:
        subprocess.run(
            ["runuser", "-u", "munge", "--", "munged", f"--socket={socket_path}",
             f"--pid-file={munge / 'munged.pid'}", f"--log-file={munge / 'munged.log'}",
             f"--seed-file={munge / 'munged.seed'}"],
            check=True, timeout=30, capture_output=True,
        )  # fmt: skip
        subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=env, timeout=30)
        subprocess.run(["slurmd", "-f", str(conf)], check=True, env=env, timeout=30)
        _wait_idle(env, timeout)
    except BaseException:
        logs = "".join(_tail(path) for path in root.rglob("*.log"))
        stop(cluster)
        raise RuntimeError(f"the test SLURM did not start:\n{logs}") from None
    return cluster


def _wait_idle(env: dict[str, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        result = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True, timeout=10
        )
        state = result.stdout.strip()
        if state == "idle":
            return
        time.sleep(0.2)
    raise RuntimeError(f"the test SLURM node is {state!r}, not idle, after {timeout:g}s")


def _tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- {path}\n" + "\n".join(text) + "\n"


def stop(cluster: Cluster) -> None:
    """Cancel every job of the test cluster and wait for them to end (so no job step outlives
    the daemons), then SIGTERM each daemon by its pid file, newest first; remove the folder."""
    env = {**os.environ, **cluster.env()}
    try:
        subprocess.run(["scancel", "--full", "--user", "root"], env=env, timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            queue = subprocess.run(
                ["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True, timeout=10
            )
            if queue.returncode != 0 or not queue.stdout.strip():
                break
            time.sleep(0.2)
    except (OSError, subprocess.SubprocessError):
        pass  # the daemons are stopped below in any case
    for pid_file in reversed(cluster.pid_files):
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)
    shutil.rmtree(cluster.root, ignore_errors=True)
