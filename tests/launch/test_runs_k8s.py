"""`tessera launch --k8s`: the JobSet and ConfigMap it writes are valid against the API's
fields, and each pod runs exactly the torchrun command that makes pods 0..N-1 one group."""

from __future__ import annotations

import yaml
from k8s_schema import problems
from launch_support import environment, tessera, tiny_recipe

from tessera.launch import kubernetes
from tessera.launch.options import ClusterOptions, WatchPolicy
from tessera.launch.registry import Registry


def _write(tmp_path, *options: str):
    home = tmp_path / "home"
    (tmp_path / "bin").mkdir()
    env = environment(home, PATH=str(tmp_path / "bin"))  # no kubectl: write, do not apply
    recipe = tiny_recipe(tmp_path)
    result = tessera(
        "launch", str(recipe), "data.batch_size=8", "--k8s", "--nodes", "4",
        "--gpus-per-node", "8", "--image", "registry.example/tessera:1.0", *options,
        env=env, cwd=tmp_path,
    )  # fmt: skip
    return result, home, recipe


def test_the_manifest_is_a_valid_jobset_and_configmap(tmp_path):
    result, home, recipe = _write(
        tmp_path, "--volume-claim", "runs-pvc", "--namespace", "ml", "--retries", "7"
    )
    assert result.returncode == 0, result.stderr
    (run,) = Registry(home / "registry.db").runs()
    path = run.folder / "jobset.yaml"
    assert "kubectl is not on PATH" in result.stderr and str(path) in result.stderr
    config_map, jobset = yaml.safe_load_all(path.read_text())
    assert problems(config_map) == [] and problems(jobset) == []

    assert config_map["data"]["recipe.yaml"] == recipe.read_text()
    assert jobset["metadata"] == {
        "name": "tessera-tiny",
        "labels": {"app.kubernetes.io/managed-by": "tessera", "tessera.dev/run-id": run.id},
        "namespace": "ml",
    }
    spec = jobset["spec"]
    assert spec["failurePolicy"] == {"maxRestarts": 7}
    assert spec["network"]["enableDNSHostnames"] is True
    (replicated,) = spec["replicatedJobs"]
    job = replicated["template"]["spec"]
    assert (job["parallelism"], job["completions"], job["completionMode"]) == (4, 4, "Indexed")
    assert job["backoffLimit"] == 0 and job["template"]["spec"]["restartPolicy"] == "Never"
    (container,) = job["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/tessera:1.0"
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "8"}}
    volumes = {volume["name"]: volume for volume in job["template"]["spec"]["volumes"]}
    assert volumes["runs"]["persistentVolumeClaim"] == {"claimName": "runs-pvc"}
    assert volumes["recipe"]["configMap"] == {"name": "tessera-tiny-recipe"}
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts == {"runs": "/runs", "recipe": "/etc/tessera", "shm": "/dev/shm"}
    rank = next(env for env in container["env"] if env["name"] == "NODE_RANK")
    assert rank["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )


def test_each_pod_runs_this_torchrun_command(tmp_path):
    result, home, _ = _write(tmp_path, "--volume-claim", "runs-pvc")
    assert result.returncode == 0, result.stderr
    (run,) = Registry(home / "registry.db").runs()
    _, jobset = yaml.safe_load_all((run.folder / "jobset.yaml").read_text())
    job = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]
    (container,) = job["template"]["spec"]["containers"]
    assert container["command"] == [
        "python", "-m", "torch.distributed.run",
        "--nnodes=4", "--nproc-per-node=8",
        "--node-rank=$(NODE_RANK)",  # Kubernetes substitutes the pod's completion index
        "--master-addr=tessera-tiny-trainer-0-0.tessera-tiny",  # pod 0, by JobSet's DNS name
        "--master-port=29500", "--max-restarts=0",
        "--module", "tessera.cli", "train", "/etc/tessera/recipe.yaml",
        "data.batch_size=8", "run_dir=/runs", "autoresume=true",
    ]  # fmt: skip
    assert run.backend == "k8s" and run.job_id == "tessera-tiny" and run.status == "queued"


def test_the_checker_refuses_what_the_api_does_not_have():
    options = ClusterOptions(nodes=2, image="x:1", volume_claim="c")
    _, jobset = kubernetes.manifests("id", "run", "a: 1\n", [], WatchPolicy(), options)
    job = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]
    job["completionMode"] = "Sorted"
    job["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Sometimes"
    job["template"]["spec"]["restartpolicy"] = "Never"
    del job["template"]["spec"]["containers"][0]["name"]
    jobset["spec"]["failurePolicy"]["maxRestarts"] = "3"
    found = "\n".join(problems(jobset))
    assert "completionMode: 'Sorted' is not one of" in found
    assert "imagePullPolicy: 'Sometimes'" in found
    assert ".spec.restartpolicy: no such field" in found
    assert ".containers[0].name: required field missing" in found
    assert "maxRestarts: expected an integer" in found


def test_bad_kubernetes_options_exit_2_naming_the_option(tmp_path):
    env = environment(tmp_path / "home")
    recipe = tiny_recipe(tmp_path)
    no_image = tessera("launch", str(recipe), "--k8s", env=env)
    assert no_image.returncode == 2 and "--image" in no_image.stderr
    slurm_option = tessera("launch", str(recipe), "--k8s", "--image", "x", "--partition", "gpu",
                           env=env)  # fmt: skip
    assert slurm_option.returncode == 2
    assert "--partition" in slurm_option.stderr and "--slurm" in slurm_option.stderr
    assert "Traceback" not in no_image.stderr + slurm_option.stderr
