"""Every random stream a run draws from continues exactly across a resume: data iterators and
evaluation never move the training RNG, and DataLoader workers draw per batch, not per worker."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from streaming_support import dropout_classifier, fashion_samples, isolated_cache  # noqa: F401
from torch.utils.data import DataLoader

from tessera.data.dataset import StreamingDataset
from tessera.data.sampler import make_dataloader
from tessera.data.writer import ShardWriter
from tessera.trainer import Trainer

BATCH = 20


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    """300 real Fashion-MNIST samples in 4 shards."""
    folder = str(tmp_path_factory.mktemp("random") / "shards")
    columns = {"image": "ndarray:uint8:28,28", "label": "int", "id": "int"}
    with ShardWriter(folder, columns, shard_size=60_000) as writer:
        for sample in fashion_samples(300):
            image = np.frombuffer(sample["image"], dtype=np.uint8).reshape(28, 28)
            writer.write({"image": image, "label": sample["label"], "id": sample["id"]})
    return folder


def _weights_after_training(shards: str, eval_interval: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = dropout_classifier(0.3)
    train = make_dataloader(StreamingDataset(local=shards, seed=3, batch_size=BATCH), BATCH)
    # a plain DataLoader without a generator draws its seed from the global RNG per iterator
    evaluation = DataLoader(StreamingDataset(local=shards, shuffle=False), batch_size=100)
    trainer = Trainer(
        model=model,
        train_data=train,
        eval_data=evaluation,
        max_duration="12ba",
        eval_interval=eval_interval,
        optimizers=torch.optim.SGD(model.parameters(), lr=0.1),
        callbacks=[],
        loggers=[],
        run_dir=None,
        device="cpu",
        seed=1,
    )
    trainer.fit()
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_evaluating_does_not_change_the_training_random_stream(shards):
    often = _weights_after_training(shards, "2ba")
    never = _weights_after_training(shards, "100ba")
    different = [name for name in often if not torch.equal(often[name], never[name])]
    assert not different, f"evaluating every 2 batches changed the dropout masks: {different}"


def test_creating_a_tessera_dataloader_draws_nothing_from_the_global_rng(shards):
    dataset = StreamingDataset(local=shards, seed=3, batch_size=BATCH)
    loader = make_dataloader(dataset, BATCH, seed=3)
    before = torch.get_rng_state()
    next(iter(loader))
    assert torch.equal(before, torch.get_rng_state())
    with pytest.raises(ValueError, match="same batch_size"):
        make_dataloader(dataset, BATCH + 1)


def _draws_per_sample(dataset: StreamingDataset, workers: int) -> dict[int, tuple]:
    """Run the DataLoader over one epoch; each sample carries what its transform drew."""
    loader = make_dataloader(dataset, BATCH, num_workers=workers)
    draws = {}
    for batch in loader:
        for i, sample_id in enumerate(batch["id"].tolist()):
            draws[sample_id] = tuple(float(batch[k][i]) for k in ("torch", "numpy", "python"))
    return draws


def _with_random_draws(sample: dict) -> dict:
    return {
        **sample,
        "torch": torch.rand(()).item(),
        "numpy": np.random.rand(),
        "python": random.random(),
    }


def test_worker_random_draws_depend_on_the_batch_not_on_workers_or_resume(shards):
    def dataset() -> StreamingDataset:
        return StreamingDataset(
            local=shards, seed=9, batch_size=BATCH, transform=_with_random_draws
        )

    one = _draws_per_sample(dataset(), workers=1)
    two = _draws_per_sample(dataset(), workers=2)
    assert len(one) == 300 and one == two
    assert len({d[0] for d in one.values()}) > 250  # the draws really are random per sample
    resumed = dataset()
    resumed.load_state_dict(dataset().state_dict(samples_seen_in_epoch=7 * BATCH))
    rest = _draws_per_sample(resumed, workers=2)
    assert len(rest) == 300 - 7 * BATCH
    assert rest == {sample_id: one[sample_id] for sample_id in rest}
