"""Multi-process training through the real launcher (`tessera train --nproc 2`, torchrun's
elastic agent, gloo on CPU) reproduces a one-process run with the same global batch."""

from __future__ import annotations

import pytest
import torch
from dist_support import (
    assert_same_weights,
    summary,
    tiny_recipe,
    train,
    train_losses,
    weights,
)
from safetensors.torch import load_file


def test_ddp_two_processes_match_one(ddp_run, reference):
    run = ddp_run["run"]
    assert ddp_run["summary"]["world_size"] == 2
    # rank 0 writes full checkpoints (DDP); every rank's log lands in the run folder
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == [
        "ep0-ba22.pt",
        "ep0-ba24.pt",
    ]
    assert len(list((run / "logs").glob("*/attempt_0/*/stderr.log"))) == 2
    assert_same_weights(weights(run), weights(reference["run"]))
    # the logged training loss is the mean over ranks: the whole batch's loss
    expected_losses = train_losses(reference["run"])
    assert sorted(expected_losses) == list(range(1, 25))
    assert train_losses(run) == pytest.approx(expected_losses, abs=1e-5)
    # evaluation metrics are reduced over both ranks' halves of the eval data
    assert ddp_run["summary"]["eval"]["eval"]["loss"] == pytest.approx(
        reference["summary"]["eval"]["eval"]["loss"], abs=1e-5
    )


def test_fsdp_saved_on_two_resumes_on_one(tmp_path, reference):
    # async_checkpoint: the shards are written in the background (DCP async_save)
    recipe = tiny_recipe(tmp_path, parallelism={"strategy": "fsdp", "async_checkpoint": True})
    run = tmp_path / "runs" / "tiny"
    first = train(recipe, "--nproc", "2", "max_duration=10ba")
    assert summary(first)["world_size"] == 2
    shards = run / "checkpoints" / "ep0-ba10"
    assert {p.name for p in shards.iterdir()} >= {
        ".metadata",
        "__0_0.distcp",
        "__1_0.distcp",
        "train-state-rank0.pt",
        "train-state-rank1.pt",
    }
    second = train(recipe)  # same run folder, one process: autoresume reshards 2 -> 1
    assert summary(second)["resumed_from"].endswith("ep0-ba10")
    assert summary(second)["timestamp"]["batch"] == 24
    # same step, same data order, same optimizer state: the one-process run's weights/losses
    assert_same_weights(weights(run), weights(reference["run"]))
    assert train_losses(run) == pytest.approx(train_losses(reference["run"]), abs=1e-5)
    # the sharded checkpoint consolidates into the exported model, without a process group
    from tessera.parallel.sharded_checkpointer import consolidate

    folder = consolidate(run / "checkpoints" / "ep0-ba24", tmp_path / "consolidated")
    merged = load_file(str(folder / "model.safetensors"))
    final = weights(run)
    assert all(torch.equal(merged[name], final[name]) for name in final)
    assert (folder / "config.json").read_text() == (run / "final" / "config.json").read_text()


@pytest.mark.slow
def test_fsdp_saved_on_one_resumes_on_two(tmp_path, reference):
    recipe = tiny_recipe(tmp_path, parallelism={"strategy": "fsdp"})
    run = tmp_path / "runs" / "tiny"
    train(recipe, "max_duration=10ba")
    second = train(recipe, "--nproc", "2")
    assert summary(second)["resumed_from"].endswith("ep0-ba10")
    assert summary(second)["world_size"] == 2
    assert_same_weights(weights(run), weights(reference["run"]))
    assert train_losses(run) == pytest.approx(train_losses(reference["run"]), abs=1e-5)
