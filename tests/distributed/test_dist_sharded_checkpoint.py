"""Sharded checkpoints in one process (a 1-rank gloo group the Trainer starts for FSDP): the
trainer picks the sharded checkpointer, a checkpoint that fails its checksums is skipped, a
resume that cannot be resplit is refused with the fix, and microbatches skip FSDP's gradient
reduction on all but the last one."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from tessera.core.errors import CheckpointError
from tessera.data.sampler import make_dataloader
from tessera.models import ModuleWithLoss
from tessera.parallel.fsdp import is_sharded
from tessera.parallel.process_group import stop
from tessera.parallel.sharded_checkpointer import ShardedCheckpointer, train_state_file
from tessera.trainer import Trainer


def fsdp_trainer(run_dir, **kwargs):
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    data = TensorDataset(torch.randn(64, 6), torch.randint(0, 3, (64,)))
    model = ModuleWithLoss(network)
    return Trainer(
        model,
        make_dataloader(data, batch_size=8, seed=0),
        max_duration=kwargs.pop("max_duration", "3ba"),
        optimizers=torch.optim.AdamW(model.parameters(), lr=0.01),
        schedulers=[],
        parallelism={"strategy": "fsdp", "wrap": ["Linear"]},
        device="cpu",
        run_dir=run_dir,
        name="run",
        save_interval="100ba",  # only the end of the run is saved
        callbacks=[],
        loggers=[],
        **kwargs,
    )


@pytest.fixture(autouse=True)
def _leave_the_group():
    yield
    stop()


def test_corrupt_shard_is_skipped_and_foreign_position_refused(tmp_path, caplog):
    trainer = fsdp_trainer(tmp_path)
    state = trainer.state
    assert is_sharded(state.unwrapped_model)
    assert isinstance(trainer.checkpointer, ShardedCheckpointer)
    trainer.fit()  # ends with a checkpoint of its last batch
    folder = tmp_path / "run" / "checkpoints"
    first = folder / "ep0-ba3"
    assert trainer.checkpointer.latest_valid() == first
    # a later checkpoint whose shard was cut short: autoresume falls back to the good one
    state.timestamp = state.timestamp.after_batch(8, 0)
    second = trainer.checkpointer.save(state)
    assert second == folder / "ep0-ba4"
    shard = second / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[:-10])
    with caplog.at_level(logging.WARNING):
        assert trainer.checkpointer.latest_valid() == first
    assert "bytes, its record says" in caplog.text
    # the good one loads back exactly
    before = {k: v.full_tensor().clone() for k, v in state.unwrapped_model.state_dict().items()}
    with torch.no_grad():
        for parameter in state.unwrapped_model.parameters():
            parameter.zero_()
    trainer.checkpointer.load(state, first)
    after = state.unwrapped_model.state_dict()
    assert all(torch.equal(after[k].full_tensor(), v) for k, v in before.items())
    assert state.timestamp.batch == 3
    # a data position kept per rank, saved by 2 processes, cannot be split over 1
    extra_path = first / train_state_file(0)
    extra = torch.load(extra_path, weights_only=True)
    extra["sharded"]["world_size"] = 2
    extra["data"] = {"per_rank_offset": 3}
    torch.save(extra, extra_path)
    from tessera.parallel.sharded_checkpointer import load_sharded

    with pytest.raises(CheckpointError, match=r"saved by 2 processes.*resume with --nproc 2"):
        load_sharded(state, first)


def test_microbatches_skip_fsdp_gradient_sync_except_the_last(tmp_path):
    whole = fsdp_trainer(tmp_path / "whole", max_duration="2ba")
    whole.fit()
    expected = {k: v.full_tensor() for k, v in whole.state.unwrapped_model.state_dict().items()}
    stop()
    split = fsdp_trainer(tmp_path / "split", max_duration="2ba", device_train_microbatch_size=2)
    root = split.state.unwrapped_model
    switches = []
    original = root.set_requires_gradient_sync

    def record(enabled, **kwargs):
        switches.append(enabled)
        original(enabled, **kwargs)

    root.set_requires_gradient_sync = record
    split.fit()
    # 4 microbatches a batch: sync off for the first three (then back on), on for the last
    assert switches == [False, True] * 3 * 2
    got = {k: v.full_tensor() for k, v in root.state_dict().items()}
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-5, atol=1e-6)
