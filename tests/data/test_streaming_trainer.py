"""The trainer resumes a StreamingDataset mid-epoch at the exact sample: a run stopped in the
middle of its second epoch and resumed from its checkpoint sees the same batches and ends with
the same weights as an uninterrupted run (deterministic mode, two DataLoader workers, a plain
DataLoader without its own generator, and dropout: the random draws continue exactly too)."""

from __future__ import annotations

import contextlib

import torch
from streaming_support import dropout_classifier, fashion_samples, isolated_cache  # noqa: F401

from tessera.core.callback import Callback
from tessera.data.dataset import StreamingDataset
from tessera.data.writer import ShardWriter
from tessera.trainer import Trainer

BATCH = 25


class SeenIds(Callback):
    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__()
        self.ids: list[list[int]] = []
        self.stop_at = stop_at

    def batch_end(self, state, logger) -> None:
        self.ids.append(state.batch["id"].tolist())
        if self.stop_at is not None and len(self.ids) == self.stop_at:
            raise KeyboardInterrupt  # a crash during this batch


def _trainer(data: str, folder, callback: Callback, autoresume: bool) -> Trainer:
    torch.manual_seed(0)
    model = dropout_classifier(0.2)
    dataset = StreamingDataset(local=data, seed=5, batch_size=BATCH, block_size=BATCH)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, num_workers=2)
    return Trainer(
        model=model,
        train_data=loader,
        max_duration="2ep",
        optimizers=torch.optim.SGD(model.parameters(), lr=0.1),
        callbacks=[callback],
        deterministic=True,
        device="cpu",
        run_dir=folder,
        name="run",
        loggers=[],
        save_interval="5ba",
        keep_last=2,
        autoresume=autoresume,
        seed=1,
        eval_interval="100ep",
    )


def test_trainer_resumes_streaming_data_mid_epoch(tmp_path):
    data = str(tmp_path / "shards")
    with ShardWriter(
        data, {"image": "ndarray:uint8:28,28", "label": "int", "id": "int"}, shard_size=40_000
    ) as w:
        for sample in fashion_samples(500):
            image = torch.frombuffer(bytearray(sample["image"]), dtype=torch.uint8)
            w.write(
                {
                    "image": image.reshape(28, 28).numpy(),
                    "label": sample["label"],
                    "id": sample["id"],
                }
            )
    whole = SeenIds()
    reference = _trainer(data, tmp_path / "reference", whole, autoresume=False)
    reference.fit()
    assert len(whole.ids) == 40  # 2 epochs of 20 batches

    first = SeenIds(stop_at=27)  # 7 batches into the second epoch
    with contextlib.suppress(KeyboardInterrupt):
        _trainer(data, tmp_path / "run", first, autoresume=False).fit()
    second = SeenIds()
    resumed = _trainer(data, tmp_path / "run", second, autoresume=True)
    resumed.fit()
    # the crash came during batch 27; the newest checkpoint is after batch 25: 26 and 27 are redone
    assert first.ids[:25] + second.ids == whole.ids  # and no batch is skipped or repeated twice
    for name, value in reference.state.model.state_dict().items():
        assert torch.equal(value, resumed.state.model.state_dict()[name]), name
