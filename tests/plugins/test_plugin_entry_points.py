"""A third-party package adds a method and a data set through Python entry points, and a
recipe names them: found, validated (typos refused with the closest name) and trained with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

EXAMPLE = Path(__file__).resolve().parent / "example"

ENTRY_POINTS = """\
[tessera.algorithms]
gradient_noise = tessera_example_plugin:GradientNoise

[tessera.data]
blobs = tessera_example_plugin:build_blobs
"""


def install(site: Path) -> None:
    """Install the example the way pip would: the package plus its .dist-info metadata."""
    import shutil

    shutil.copytree(EXAMPLE / "tessera_example_plugin", site / "tessera_example_plugin")
    info = site / "tessera_example_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tessera-example-plugin\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(ENTRY_POINTS)


def run(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_plugin_method_and_data_set_train_from_a_recipe(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install(site)
    recipe = tmp_path / "plugin.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "plugin-run",
                "run_dir": str(tmp_path / "runs"),
                "max_duration": "4ba",
                "save_interval": None,
                "model": {"name": "resnet", "width": 4, "num_classes": 2},
                "data": {"name": "blobs", "samples": 128},
                "algorithms": {"gradient_noise": {"std": 0.5}},
                "callbacks": {},
                "loggers": {"jsonl": {}},
            }
        )
    )
    typo = run(site, "config", "show", str(recipe), "algorithms.gradient_noise.sdt=1", cwd=tmp_path)
    assert typo.returncode == 2 and "Traceback" not in typo.stderr
    assert "algorithms.gradient_noise.sdt: unknown key; did you mean 'std'?" in typo.stderr
    result = run(site, "train", str(recipe), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "runs" / "plugin-run" / "metrics.jsonl").read_text().splitlines()
    applied = [json.loads(line) for line in lines if "gradient_noise/applied" in line]
    assert [record["step"] for record in applied] == [0, 1, 2, 3]  # the plug-in ran every batch
    # without the package, the recipe's names are unknown, with the closest built-in offered
    missing = run(tmp_path / "empty", "config", "show", str(recipe), cwd=tmp_path)
    assert missing.returncode == 2 and "unknown algorithm 'gradient_noise'" in missing.stderr
