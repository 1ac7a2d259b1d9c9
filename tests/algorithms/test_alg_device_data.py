"""DeviceData: the training set kept on the device is batched in exactly the order of the
ordinary resumable loader (same seed, epoch and rank share) and a run resumes mid-epoch
exactly."""

from __future__ import annotations

import pytest
import torch
from alg_support import EVERY_BATCH, FirstImages, Probe, tiny_resnet, weights_of
from torch.utils.data import DataLoader

from tessera.algorithms import get
from tessera.algorithms.device_data import to_device_loader
from tessera.core.errors import ConfigError
from tessera.data.device_loader import DeviceLoader
from tessera.data.fashion_mnist import collate_ready_batch
from tessera.data.sampler import make_dataloader


def _epoch(loader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.sampler.set_epoch(epoch)
    return [(images.clone(), labels.clone()) for images, labels in loader]


@pytest.mark.parametrize("rank", [0, 1])
def test_device_loader_order_equals_the_cpu_samplers_for_each_seed_and_epoch(fashion_test, rank):
    data = FirstImages(fashion_test, 0, 100)
    cpu = make_dataloader(
        data, 16, shuffle=True, seed=5, rank=rank, world_size=2, collate_fn=collate_ready_batch
    )
    device = to_device_loader(cpu, "cpu")
    assert isinstance(device, DeviceLoader) and len(device) == len(cpu) == 4
    epochs = []
    for epoch in (0, 1):
        expected, actual = _epoch(cpu, epoch), _epoch(device, epoch)
        assert len(actual) == len(expected)
        for (x, y), (ex, ey) in zip(actual, expected):
            assert torch.equal(x, ex) and torch.equal(y, ey)
        epochs.append(torch.cat([y for _, y in actual]))
    assert not torch.equal(epochs[0], epochs[1])  # a new order every epoch


def test_device_loader_continues_mid_epoch_from_its_state(fashion_test):
    data = FirstImages(fashion_test, 0, 64)
    loader = DeviceLoader((data.images, data.labels), 8, seed=3)
    loader.set_epoch(2)
    whole = [labels for _, labels in loader]
    state = loader.state_dict(samples_seen_in_epoch=24)
    again = DeviceLoader((data.images, data.labels), 8, seed=3)
    again.load_state_dict(state)
    again.set_epoch(2)
    assert len(again) == 5
    assert all(torch.equal(a, b) for a, b in zip([labels for _, labels in again], whole[3:]))


def _run(make_trainer, tmp_path, name, load_path=None):
    seen = Probe(after_dataloader=lambda state: state.batch[1].clone())
    kinds = Probe(fit_start=lambda state: type(state.train_dataloader).__name__)
    model = tiny_resnet()
    trainer = make_trainer(
        [get("device_data")],
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        batches=4,
        max_duration="2ep",
        callbacks=[seen, kinds],
        run_dir=tmp_path,
        name=name,
        load_path=load_path,
        **EVERY_BATCH,
    )
    trainer.fit()
    return trainer, seen.seen["after_dataloader"], kinds.seen["fit_start"]


def test_device_data_run_resumes_mid_epoch_exactly(make_trainer, tmp_path):
    full, batches, kinds = _run(make_trainer, tmp_path, "full")
    assert kinds == ["DeviceLoader"] and len(batches) == 8
    middle = tmp_path / "full" / "checkpoints" / "ep1-ba6.pt"  # batch 2 of epoch 1
    resumed, rest, _ = _run(make_trainer, tmp_path, "resumed", load_path=middle)
    assert resumed.resumed_from == middle and len(rest) == 2
    assert all(torch.equal(a, b) for a, b in zip(rest, batches[6:]))
    final, again = weights_of(full.state.model), weights_of(resumed.state.model)
    assert all(torch.equal(final[k], again[k]) for k in final)


def test_device_data_refuses_loaders_it_cannot_keep_in_order_and_large_sets(fashion_test):
    data = FirstImages(fashion_test, 0, 32)
    plain = DataLoader(data, batch_size=8, collate_fn=collate_ready_batch)
    with pytest.raises(ConfigError, match="resumable sampler"):
        to_device_loader(plain, "cpu")
    ordered = make_dataloader(data, 8, collate_fn=collate_ready_batch)
    with pytest.raises(ConfigError, match="more than"):
        to_device_loader(ordered, "cpu", max_gb=1e-6)
