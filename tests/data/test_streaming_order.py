"""Deterministic elastic order: the same global order at any world size, exact mid-epoch resume
at a different world size, real DataLoader worker processes, and deterministic stream mixing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from streaming_support import fashion_samples, isolated_cache  # noqa: F401

from tessera.core.errors import DataError
from tessera.data.dataset import StreamingDataset
from tessera.data.streams import Stream
from tessera.data.writer import ShardWriter

COUNT = 4000
BATCH = 8


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    """4,000 real Fashion-MNIST samples in about 40 shards, with zstd compression."""
    out = tmp_path_factory.mktemp("fashion")
    columns = {"image": "bytes", "label": "int", "id": "int"}
    with ShardWriter(str(out), columns, compression="zstd", shard_size=80_000) as writer:
        for sample in fashion_samples(COUNT):
            writer.write(sample)
    return str(out)


def _ids(dataset) -> list[int]:
    return [sample["id"] for sample in dataset]


def _global_batches(per_rank: list[list[int]], batch: int) -> list[set[int]]:
    """What the trainer sees each step: the union of every rank's k-th batch."""
    steps = -(-len(per_rank[0]) // batch)
    return [{i for ids in per_rank for i in ids[k * batch : (k + 1) * batch]} for k in range(steps)]


def _ranks(world: int, **kwargs) -> list[list[int]]:
    return [_ids(StreamingDataset(rank=r, world_size=world, **kwargs)) for r in range(world)]


def test_same_global_order_for_any_world_size(fashion_dir):
    global_batch = 64
    common = {"local": fashion_dir, "seed": 7, "block_size": 8}  # block_size divides batches
    order = StreamingDataset(**common).order().tolist()
    assert order != sorted(order) and sorted(order) == list(range(COUNT))  # shuffled, complete
    expected = [set(order[k : k + global_batch]) for k in range(0, COUNT, global_batch)]
    for world in (1, 2, 4, 8):
        per_rank = _ranks(world, **common)
        assert len({len(ids) for ids in per_rank}) == 1  # equal batch counts on every rank
        flat = [i for ids in per_rank for i in ids]
        assert sorted(flat) == list(range(COUNT))  # the whole data set, no duplicates
        assert _global_batches(per_rank, global_batch // world) == expected


def test_uneven_world_size_gives_equal_counts(fashion_dir):
    world = 3
    per_rank = [
        _ids(StreamingDataset(local=fashion_dir, rank=r, world_size=world)) for r in range(3)
    ]
    assert [len(ids) for ids in per_rank] == [-(-COUNT // world)] * world
    flat = [i for ids in per_rank for i in ids]
    assert set(flat) == set(range(COUNT)) and len(flat) - COUNT < world


def test_each_rank_reads_few_shards(fashion_dir):
    dataset = StreamingDataset(local=fashion_dir, seed=1, rank=0, world_size=8, partitions=8)
    plan = dataset.plan()
    body = plan[: len(plan) * 9 // 10]  # the last round (< world x block samples) is dealt evenly
    shards_touched = set(np.searchsorted(dataset.shard_first, body, side="right") - 1)
    total = len(dataset.shards)
    assert total >= 30
    assert len(shards_touched) <= total // 8 + 2  # about 1/8 of the shards, not all of them


def test_epochs_differ_and_repeat_exactly(fashion_dir):
    dataset = StreamingDataset(local=fashion_dir, seed=5)
    first = _ids(dataset)
    dataset.set_epoch(1)
    second = _ids(dataset)
    assert first != second and sorted(second) == list(range(COUNT))
    dataset.set_epoch(0)
    assert _ids(dataset) == first
    assert _ids(StreamingDataset(local=fashion_dir, seed=6)) != first


def test_dataloader_workers_follow_the_global_order(fashion_dir, tmp_path):
    cache = str(tmp_path / "cache")
    remote = StreamingDataset(fashion_dir, cache, batch_size=BATCH, rank=1, world_size=2)
    expected = _ids(StreamingDataset(local=fashion_dir, rank=1, world_size=2))
    loader = torch.utils.data.DataLoader(remote, batch_size=BATCH, num_workers=2)
    batches = [batch["id"].tolist() for batch in loader]
    assert [i for batch in batches for i in batch] == expected
    assert len(batches) == -(-len(expected) // BATCH)


def test_persistent_spawned_workers_follow_set_epoch(fashion_dir):
    import copy
    import pickle

    dataset = StreamingDataset(local=fashion_dir, seed=8, batch_size=BATCH)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=BATCH,
        num_workers=1,
        persistent_workers=True,
        multiprocessing_context="spawn",  # the dataset is pickled into fresh interpreters
    )
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        expected = StreamingDataset(local=fashion_dir, seed=8)
        expected.set_epoch(epoch)
        assert [i for b in loader for i in b["id"].tolist()] == _ids(expected)
    clone = pickle.loads(pickle.dumps(copy.deepcopy(dataset)))  # plain copies still work
    assert clone.epoch == 1 and _ids(clone) == _ids(expected)


@pytest.mark.parametrize(("before", "after"), [(2, 4), (8, 1), (4, 2)])
def test_resume_mid_epoch_on_another_world_size(fashion_dir, before, after):
    global_batch = 64
    common = {"local": fashion_dir, "seed": 11, "block_size": 8}
    reference = StreamingDataset(**common)
    reference.set_epoch(3)
    order = reference.order().tolist()
    expected = [set(order[k : k + global_batch]) for k in range(0, COUNT, global_batch)]
    steps = 37
    seen = steps * global_batch  # the trainer's global count after 37 steps
    consumed = []
    for rank in range(before):
        dataset = StreamingDataset(rank=rank, world_size=before, **common)
        dataset.set_epoch(3)
        consumed.append(_ids(dataset)[: steps * global_batch // before])
    saver = StreamingDataset(rank=0, world_size=before, **common)
    saver.set_epoch(3)
    saved = saver.state_dict(seen)
    resumed = []
    for rank in range(after):
        dataset = StreamingDataset(rank=rank, world_size=after, **common)
        dataset.load_state_dict(saved)
        dataset.set_epoch(3)  # the trainer calls set_epoch at the (resumed) epoch start
        resumed.append(_ids(dataset))
    assert _global_batches(consumed, global_batch // before) == expected[:steps]
    assert _global_batches(resumed, global_batch // after) == expected[steps:]  # continues
    assert sorted(i for ids in consumed + resumed for i in ids) == list(range(COUNT))
    dataset.set_epoch(4)  # the next epoch starts from its beginning again
    assert len(_ids(dataset)) == COUNT // after


def test_resume_with_workers_matches_uninterrupted_run(fashion_dir, tmp_path):
    full = StreamingDataset(local=fashion_dir, seed=2, batch_size=BATCH)
    expected = _ids(full)
    resumed = StreamingDataset(local=fashion_dir, seed=2, batch_size=BATCH)
    resumed.load_state_dict(full.state_dict(BATCH * 450))  # 90% of the epoch
    loader = torch.utils.data.DataLoader(resumed, batch_size=BATCH, num_workers=2)
    assert [i for b in loader for i in b["id"].tolist()] == expected[BATCH * 450 :]


def test_resume_refuses_a_state_it_cannot_honour(fashion_dir):
    state = StreamingDataset(local=fashion_dir, seed=1).state_dict(100)
    with pytest.raises(DataError, match=r"checkpoint's seed is 1 but this data set's is 2"):
        StreamingDataset(local=fashion_dir, seed=2).load_state_dict(state)
    with pytest.raises(DataError, match="outside the epoch"):
        StreamingDataset(local=fashion_dir, seed=1).load_state_dict(state | {"samples_seen": 10**9})
    torch.save(state, "/dev/null")  # plain types only: loadable with weights_only=True


def test_state_survives_torch_save_with_weights_only(fashion_dir, tmp_path):
    dataset = StreamingDataset(local=fashion_dir)
    torch.save(dataset.state_dict(123), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    dataset.load_state_dict(state)
    assert _ids(dataset) == _ids(StreamingDataset(local=fashion_dir))[123:]


def test_stream_mixing_is_deterministic_and_resampled_per_epoch(fashion_dir, tmp_path):
    other = tmp_path / "other"
    with ShardWriter(str(other), {"image": "bytes", "label": "int", "id": "int"}) as writer:
        for sample in fashion_samples(500, split="train"):
            writer.write(sample | {"id": 100_000 + sample["id"]})

    def make(**kwargs):
        return StreamingDataset(
            streams=[Stream(local=fashion_dir, choose=1000), Stream(local=str(other), repeat=2.5)],
            seed=4,
            **kwargs,
        )

    dataset = make()
    epoch0 = _ids(dataset)
    assert len(epoch0) == 1000 + 1250
    from_other = [i - 100_000 for i in epoch0 if i >= 100_000]
    assert len(from_other) == 1250 and np.bincount(from_other).min() == 2  # 2 copies + 0.5
    first = [i for i in epoch0 if i < 100_000]
    assert len(set(first)) == 1000  # a subset without repeats
    assert _ids(make()) == epoch0  # deterministic
    dataset.set_epoch(1)
    assert {i for i in _ids(dataset) if i < 100_000} != set(first)  # resampled each epoch
    proportion = StreamingDataset(
        streams=[
            Stream(local=fashion_dir, proportion=0.75),
            Stream(local=str(other), proportion=0.25),
        ],
        epoch_size=2000,
    )
    ids = _ids(proportion)
    assert len(ids) == 2000 and sum(i >= 100_000 for i in ids) == 500


def _gloo_rank(rank: int, world: int, port: int, data: str, queue) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    dataset = StreamingDataset(local=data, seed=9, batch_size=BATCH, block_size=BATCH)
    ids = torch.tensor(_ids(dataset))
    gathered = [torch.zeros_like(ids) for _ in range(world)]
    dist.all_gather(gathered, ids)  # needs the same count on every rank
    queue.put((rank, [g.tolist() for g in gathered]))
    dist.destroy_process_group()


def test_real_process_group_ranks_split_the_global_order(fashion_dir):
    import multiprocessing
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    ranks = [
        context.Process(target=_gloo_rank, args=(r, 2, port, fashion_dir, queue)) for r in range(2)
    ]
    for process in ranks:
        process.start()
    results = dict(queue.get(timeout=120) for _ in ranks)
    for process in ranks:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert results[0] == results[1]
    expected = StreamingDataset(local=fashion_dir, seed=9, block_size=BATCH).order().tolist()
    assert _global_batches(results[0], BATCH) == [
        set(expected[k : k + 2 * BATCH]) for k in range(0, COUNT, 2 * BATCH)
    ]
