"""Table-mode estimates: the workload is read from the model itself, the numbers follow the
documented formulas (checked by hand here), the memory plan advises, bad input exits 2."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from estimate_support import RECIPES, tessera, tiny_char_overrides
from torch.utils.flop_counter import FlopCounterMode

from tessera.config import load_config
from tessera.config.build import build_data, build_model
from tessera.estimate import efficiency
from tessera.estimate.hardware import get_hardware
from tessera.estimate.memory import memory_plan
from tessera.estimate.plan import estimate_from_table
from tessera.estimate.workload import read_workload
from tessera.models.gpt import GPTConfig


def test_char_gpt_workload_matches_the_mfu_monitors_count(shakespeare, tmp_path):
    config = load_config(
        RECIPES / "shakespeare-char.yaml", tiny_char_overrides(shakespeare, tmp_path)
    )
    work = read_workload(config, "char")
    real = build_model(config)
    batch = next(iter(build_data(config).train))
    assert work.flops_per_batch == pytest.approx(real.flops_per_batch(batch))
    assert work.samples_per_batch == 12 and work.tokens_per_batch == 12 * 32
    assert work.total_batches == 6 and work.evaluations == 2 and work.checkpoints == 0
    assert work.parameters == sum(p.numel() for p in real.parameters())
    assert work.flops_per_sample == pytest.approx(32 * real.config.flops_per_token(32))


def test_resnet_flops_are_counted_by_pytorch_and_epochs_use_the_data_size(fashion_mnist_dir):
    config = load_config(
        RECIPES / "fashion-mnist-baseline.yaml",
        [f"data.path={fashion_mnist_dir}", "max_duration=3ep", "device=cpu"],
    )
    work = read_workload(config, "fmnist")
    assert work.batches_per_epoch == math.ceil(60000 / 256)
    assert work.total_batches == 3 * work.batches_per_epoch
    assert work.evaluations == 3 and work.eval_samples == 10000
    assert "FlopCounterMode" in work.flops_source
    model = build_model(config)
    counter = FlopCounterMode(display=False)
    with counter:
        images = torch.zeros(4, 1, 28, 28)
        model.loss(
            model((images, torch.zeros(4, dtype=torch.long))),
            (images, torch.zeros(4, dtype=torch.long)),
        ).backward()
    assert work.flops_per_sample == pytest.approx(counter.get_total_flops() / 4)


def test_table_estimate_follows_the_documented_formula(tmp_path):
    """gpt-1b on 8 H100s: the step time and the dollars recomputed here from docs/estimate.md."""
    config = load_config(RECIPES / "gpt-1b.yaml")
    work = read_workload(config, "gpt-1b")
    estimate = estimate_from_table(config, work, get_hardware("h100"), gpus=8, price=2.5)
    shape = GPTConfig(preset="gpt-1b")
    flops_per_batch = 512 * 2048 * shape.flops_per_token(2048)
    assert work.flops_per_batch == pytest.approx(flops_per_batch)
    mfu = 0.519  # the largest transformer anchor: 1.44B parameters
    expected_step = flops_per_batch / 8 / (989e12 * mfu) / 0.95
    assert estimate.step_seconds == pytest.approx(expected_step, rel=1e-3)
    batches = math.ceil(2.6e10 / (512 * 2048))
    assert estimate.seconds["training steps"] == pytest.approx(batches * expected_step, rel=1e-3)
    wall = estimate.wall_seconds
    assert wall["expected"] == pytest.approx(sum(estimate.seconds.values()))
    assert wall["low"] < wall["expected"] < wall["high"]
    assert estimate.dollars["expected"] == pytest.approx(wall["expected"] / 3600 * 8 * 2.5)
    # Memory per GPU under DDP: 16 bytes of state per parameter plus activations.
    plan = estimate.memory
    assert plan.parts["weights"] + plan.parts["gradients"] + plan.parts["optimizer"] == (
        pytest.approx(work.parameters * 16)
    )
    assert plan.fits


def test_small_models_are_bound_by_the_launch_floor(shakespeare, tmp_path):
    config = load_config(
        RECIPES / "shakespeare-char.yaml", tiny_char_overrides(shakespeare, tmp_path)
    )
    work = read_workload(config, "char")
    estimate = estimate_from_table(config, work, get_hardware("h200"))
    assert estimate.bound == "launch overhead"
    assert estimate.step_seconds == pytest.approx(
        work.parameter_tensors * efficiency.GPU_SECONDS_PER_TENSOR
    )


def test_memory_plan_advises_when_it_does_not_fit():
    config = load_config(RECIPES / "gpt-1b.yaml", ["activation_checkpointing=false"])
    work = read_workload(config, "gpt-1b")
    estimate = estimate_from_table(config, work, get_hardware("l4"), gpus=8)
    plan = estimate.memory
    assert not plan.fits
    advice = "\n".join(plan.advice)
    assert "parallelism.strategy: fsdp" in advice and "activation_checkpointing" in advice
    together = next(line for line in plan.advice if line.startswith("fsdp and activation"))
    assert "fits" in together and "not fit" not in together
    sharded = memory_plan(work, get_hardware("l4"), 8, strategy="fsdp")
    assert sharded.parts["optimizer"] == pytest.approx(work.parameters * 8 / 8)
    assert "gathered blocks" in sharded.parts


def test_cli_prints_and_writes_json(tmp_path, capsys):
    out = tmp_path / "estimate.json"
    assert (
        tessera(
            "estimate",
            RECIPES / "gpt-125m.yaml",
            "--gpu",
            "a100-40gb",
            "--price",
            "1.5",
            "--json",
            out,
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "wall time:" in text and "cost at $1.50/GPU-hour" in text and "memory per GPU" in text
    data = json.loads(out.read_text())
    assert data["hardware"] == "a100-40gb" and data["mode"] == "table"
    assert data["dollars"]["expected"] == pytest.approx(data["gpu_hours"]["expected"] * 1.5)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--gpu", "h10"], "did you mean 'h100'"),
        (["--price", "-1"], "--price: '-1' is not accepted: must be at least 0"),
        (["--gpus", "0"], "--gpus"),
    ],
)
def test_bad_input_exits_2(arguments, message, capsys):
    assert tessera("estimate", RECIPES / "gpt-125m.yaml", *arguments) == 2
    assert message in capsys.readouterr().err


def test_epochs_without_a_readable_data_set_say_what_is_needed(tmp_path, capsys):
    recipe = tmp_path / "text-epochs.yaml"
    recipe.write_text(
        "max_duration: 2ep\nmodel: {name: gpt, n_layer: 1, n_head: 2, d_model: 32, "
        "max_seq_len: 32, vocab_size: 64}\n"
        f"data: {{name: text, path: {tmp_path / 'missing'}, batch_size: 8, seq_len: 32}}\n"
    )
    assert tessera("estimate", recipe, "--gpu", "h100") == 2
    err = capsys.readouterr().err
    assert "in epochs" in err and "samples per epoch" in err and "max_duration=1000ba" in err


def test_no_traceback_in_a_real_process(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tessera.cli",
            "estimate",
            str(RECIPES / "gpt-125m.yaml"),
            "--gpu",
            "h1000",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "unknown device 'h1000'" in result.stderr


def test_the_published_run_is_estimated_without_a_gpu():
    """MPT-7B on 440 A100-40GB, as benchmarks/estimate_accuracy.py reports it."""
    import importlib.util

    path = RECIPES.parent / "benchmarks" / "estimate_accuracy.py"
    spec = importlib.util.spec_from_file_location("estimate_accuracy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    mpt = module.mpt_7b()
    assert mpt["estimate"]["gpus"] == 440 and mpt["estimate"]["hardware"] == "a100-40gb"
    assert mpt["estimate"]["workload"]["total_tokens"] >= 1e12
    days = mpt["estimated_days"]
    assert days["low"] < days["expected"] < days["high"]
    assert abs(mpt["error"] - (days["expected"] / 9.5 - 1)) < 1e-9
