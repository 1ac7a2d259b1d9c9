"""The Kubernetes back-end: a JobSet (jobset.x-k8s.io/v1alpha2) that runs the recipe on
`--nodes` pods, applied with kubectl when kubectl is on PATH.

One replicated Job of `--nodes` indexed pods; pod i runs torchrun with node rank i (the Job's
completion index) and meets the others at pod 0, whose stable name JobSet's DNS hostnames
provide (`<jobset>-trainer-0-0.<jobset>`). The recipe travels in a ConfigMap beside the JobSet;
the run folder lives on `--volume-claim` (a PersistentVolumeClaim) mounted at `--mount`, so a
restarted pod resumes from the checkpoints there. Restarts are JobSet's: any failed pod makes
it recreate all pods, up to `--retries` times (failurePolicy.maxRestarts).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from tessera.core.errors import UserError
from tessera.launch.options import ClusterOptions, WatchPolicy
from tessera.launch.record import register, run_folder
from tessera.launch.registry import Registry, Run

_console = Console(stderr=True)
API_VERSION = "jobset.x-k8s.io/v1alpha2"
REPLICATED_JOB = "trainer"
RECIPE_MOUNT = "/etc/tessera"
DEFAULT_PORT = 29500
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def jobset_name(run_name: str) -> str:
    """A DNS label for the JobSet; short enough that its pods' hostnames stay within 63."""
    name = re.sub(r"[^a-z0-9-]+", "-", run_name.lower()).strip("-") or "run"
    return f"tessera-{name}"[:40].rstrip("-")


def torchrun_command(
    name: str, overrides: list[str], options: ClusterOptions, mount: str | None = None
) -> list[str]:
    """The command every pod runs; `$(NODE_RANK)` is filled in by Kubernetes from the env."""
    head = f"{name}-{REPLICATED_JOB}-0-0.{name}"
    return [
        "python",
        "-m",
        "torch.distributed.run",
        f"--nnodes={options.nodes}",
        f"--nproc-per-node={options.processes_per_node}",
        "--node-rank=$(NODE_RANK)",
        f"--master-addr={head}",
        f"--master-port={options.port or DEFAULT_PORT}",
        "--max-restarts=0",  # JobSet restarts the whole group, which resumes from checkpoints
        "--module",
        "tessera.cli",
        "train",
        f"{RECIPE_MOUNT}/recipe.yaml",
        *overrides,
        f"run_dir={mount or options.mount}",
        "autoresume=true",
    ]


def manifests(
    run_id: str,
    run_name: str,
    recipe_text: str,
    overrides: list[str],
    policy: WatchPolicy,
    options: ClusterOptions,
) -> list[dict[str, Any]]:
    """The ConfigMap holding the recipe and the JobSet that runs it."""
    name = jobset_name(run_name)
    labels = {"app.kubernetes.io/managed-by": "tessera", "tessera.dev/run-id": run_id}
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if options.namespace:
        metadata["namespace"] = options.namespace
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {**metadata, "name": f"{name}-recipe"},
        "data": {"recipe.yaml": recipe_text},
    }
    container: dict[str, Any] = {
        "name": "trainer",
        "image": options.image,
        "command": torchrun_command(name, overrides, options),
        "env": [
            {
                "name": "NODE_RANK",
                "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}},
            },
            {"name": "TESSERA_RUN_ID", "value": run_id},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        "ports": [{"containerPort": options.port or DEFAULT_PORT, "name": "rendezvous"}],
        "volumeMounts": [
            {"name": "runs", "mountPath": options.mount},
            {"name": "recipe", "mountPath": RECIPE_MOUNT, "readOnly": True},
            {"name": "shm", "mountPath": "/dev/shm"},  # data loader workers, NCCL
        ],
    }
    if options.gpus_per_node:
        gpus = str(options.gpus_per_node)
        container["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    runs_volume: dict[str, Any] = {"name": "runs"}
    if options.volume_claim:
        runs_volume["persistentVolumeClaim"] = {"claimName": options.volume_claim}
    else:
        runs_volume["emptyDir"] = {}
    pod_spec = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [
            runs_volume,
            {"name": "recipe", "configMap": {"name": f"{name}-recipe"}},
            {"name": "shm", "emptyDir": {"medium": "Memory"}},
        ],
    }
    jobset = {
        "apiVersion": API_VERSION,
        "kind": "JobSet",
        "metadata": metadata,
        "spec": {
            "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
            "failurePolicy": {"maxRestarts": policy.retries},
            "replicatedJobs": [
                {
                    "name": REPLICATED_JOB,
                    "replicas": 1,
                    "template": {
                        "spec": {
                            "parallelism": options.nodes,
                            "completions": options.nodes,
                            "completionMode": "Indexed",
                            "backoffLimit": 0,
                            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
                        }
                    },
                }
            ],
        },
    }
    return [config_map, jobset]


def _kubectl(*arguments: str, namespace: str | None = None) -> subprocess.CompletedProcess:
    command = ["kubectl", *arguments, "--request-timeout=30s"]
    command += ["-n", namespace] if namespace else []
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def deploy(
    config: Any, recipe: str, overrides: list[str], policy: WatchPolicy, options: ClusterOptions
) -> int:
    """Write the manifest, apply it when kubectl is here (and --no-apply was not given)."""
    folder = run_folder(config)
    folder.mkdir(parents=True, exist_ok=True)
    registry = Registry()
    launch = {"policy": dataclasses.asdict(policy), "cluster": dataclasses.asdict(options)}
    run_id = register(registry, config, recipe, overrides, "k8s", "queued", launch=launch)
    if options.volume_claim is None:
        _console.print(
            "[bold yellow]warning[/]: no --volume-claim: the run folder is an emptyDir, so "
            "checkpoints and the model vanish with the pods; give a PersistentVolumeClaim"
        )
    documents = manifests(run_id, config.name, Path(recipe).read_text(), overrides, policy, options)
    path = Path(options.manifest) if options.manifest else folder / "jobset.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    name = jobset_name(config.name)
    registry.update(run_id, job_id=name)
    if not options.apply:
        registry.update(run_id, reason=f"manifest written to {path}; not applied (--no-apply)")
        _console.print(f"wrote {path}; apply it with `kubectl apply -f {path}`")
        return 0
    if shutil.which("kubectl") is None:
        registry.update(run_id, reason=f"manifest written to {path}; kubectl not on PATH")
        _console.print(
            f"wrote {path}; kubectl is not on PATH here, so apply it where it is: "
            f"`kubectl apply -f {path}`"
        )
        return 0
    result = _kubectl("apply", "-f", str(path), namespace=options.namespace)
    if result.returncode != 0:
        registry.update(run_id, status="failed", reason=f"kubectl apply: {result.stderr.strip()}")
        raise UserError(f"--k8s: kubectl apply -f {path} failed: {result.stderr.strip()}")
    _console.print(f"applied {path}: JobSet {name} (run {run_id})")
    return 0


def redeploy(registry: Registry, run: Run) -> int:
    from tessera.config import load_config

    policy = WatchPolicy(**run.launch["policy"])
    options = ClusterOptions(**run.launch["cluster"])
    if options.apply and shutil.which("kubectl") is not None:
        _kubectl(
            "delete", "jobset", str(run.job_id), "--ignore-not-found", namespace=options.namespace
        )
    config = load_config(run.recipe, run.overrides)
    return deploy(config, str(run.recipe), run.overrides, policy, options)


def status_of(jobset: dict[str, Any]) -> tuple[str, str | None]:
    """The registry status for a JobSet object as kubectl returns it."""
    status = jobset.get("status", {})
    for condition in status.get("conditions", []):
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Completed":
            return "completed", None
        if condition.get("type") == "Failed":
            return "failed", condition.get("message") or condition.get("reason")
    restarts = status.get("restarts", 0)
    return ("restarting" if restarts else "running"), (f"{restarts} restarts" if restarts else None)


def refresh(registry: Registry, run: Run) -> None:
    if not run.job_id or shutil.which("kubectl") is None:
        return
    namespace = run.launch.get("cluster", {}).get("namespace")
    result = _kubectl("get", "jobset", run.job_id, "-o", "json", namespace=namespace)
    if result.returncode != 0:
        return
    status, reason = status_of(json.loads(result.stdout))
    registry.update(run.id, status=status, reason=reason)


def delete(registry: Registry, run: Run) -> str:
    if shutil.which("kubectl") is None:
        raise UserError(
            f"RUN: stopping the Kubernetes run {run.id} needs kubectl on PATH; or run "
            f"`kubectl delete jobset {run.job_id}` where it is"
        )
    namespace = run.launch.get("cluster", {}).get("namespace")
    result = _kubectl("delete", "jobset", str(run.job_id), namespace=namespace)
    if result.returncode != 0:
        raise UserError(f"kubectl delete jobset {run.job_id} failed: {result.stderr.strip()}")
    registry.update(run.id, status="stopped", reason="deleted by tessera runs stop")
    return f"run {run.id}: deleted JobSet {run.job_id}"
