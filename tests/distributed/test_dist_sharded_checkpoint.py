"""Sharded checkpoints in one process (a 1-rank gloo group): a checkpoint that fails its
checksums is skipped, and a resume that cannot be resplit is refused with the fix."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from tessera.core import distributed, sharded_checkpoint
from tessera.data.sampler import make_dataloader
from tessera.core.errors import CheckpointError
from tessera.core.trainer import Trainer
from tessera.models import ModuleWithLoss


@pytest.fixture
def fsdp_trainer():
    info = distributed.start(backend="gloo", device="cpu", need_group=True)
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    data = TensorDataset(torch.randn(64, 6), torch.randint(0, 3, (64,)))
    model = ModuleWithLoss(network)
    trainer = Trainer(
        model,
        make_dataloader(data, batch_size=8, seed=0),
        max_duration="3ba",
        optimizers=torch.optim.AdamW(model.parameters(), lr=0.01),
        callbacks=[distributed.ParallelWrapper("fsdp", info, {"wrap": ["Linear"]})],
        device="cpu",
    )
    try:
        yield trainer
    finally:
        distributed.stop()


def test_corrupt_shard_is_skipped_and_foreign_position_refused(tmp_path, fsdp_trainer):
    state = fsdp_trainer.state
    assert distributed.is_sharded(state.unwrapped_model)
    fsdp_trainer.fit()
    first = sharded_checkpoint.save(state, tmp_path)
    assert sharded_checkpoint.latest_valid(tmp_path) == first
    # a later checkpoint whose shard was cut short: autoresume falls back to the good one
    state.timestamp = state.timestamp.after_batch(8, 0)
    second = sharded_checkpoint.save(state, tmp_path)
    shard = second / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[:-10])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert sharded_checkpoint.latest_valid(tmp_path) == first
    assert any("has" in str(w.message) and "bytes" in str(w.message) for w in caught)
    # the good one loads back exactly
    before = {k: v.full_tensor().clone() for k, v in state.unwrapped_model.state_dict().items()}
    with torch.no_grad():
        for parameter in state.unwrapped_model.parameters():
            parameter.zero_()
    sharded_checkpoint.load(state, first)
    after = state.unwrapped_model.state_dict()
    assert all(torch.equal(after[k].full_tensor(), v) for k, v in before.items())
    assert state.timestamp.batch == 3
    # a data position kept per rank, saved by 2 processes, cannot be split over 1
    extra_path = first / sharded_checkpoint.train_state_file(0)
    extra = torch.load(extra_path, weights_only=True)
    extra["sharded"]["world_size"] = 2
    extra["data"] = {"per_rank_offset": 3}
    torch.save(extra, extra_path)
    with pytest.raises(CheckpointError, match=r"saved by 2 processes.*resume with --nproc 2"):
        sharded_checkpoint.load(state, first)
