"""Deterministic, elastic sample order: one global order per epoch, split among ranks and workers.

The global order depends only on the seed, the epoch, the data set's shards and a fixed number of
canonical partitions P (never on the number of ranks or workers):

1. Shuffle the order of the shards.
2. Lay the shards' samples end to end and cut the sequence into P contiguous partitions of equal
   size (within one sample); each partition covers a small block of shards.
3. Inside each partition, shuffle samples within windows of `window` consecutive samples.
4. Interleave the partitions round-robin: global position g reads partition g mod P.

Rank r of W takes global positions start + r, start + r + W, ...: when W divides P it only ever
reads P / W partitions, so it downloads about 1/W of the shards. See docs/data/shuffle.md.
"""

from __future__ import annotations

import numpy as np

STREAM_SALT = 0x7E55E7A


def _rng(seed: int, epoch: int, purpose: int, item: int = 0) -> np.random.Generator:
    return np.random.default_rng([STREAM_SALT, seed & 0xFFFFFFFFFFFF, epoch, purpose, item])


def epoch_samples(
    stream_shards: list[list[tuple[int, int]]], counts: list[int], seed: int, epoch: int
) -> list[np.ndarray]:
    """For each shard (all streams, in order), the sample ids it contributes this epoch.

    `stream_shards[s]` lists stream s's shards as (first global id, sample count); `counts[s]`
    is how many samples stream s contributes per epoch: whole copies of the stream plus a
    random subset (drawn per epoch) for the remainder.
    """
    per_shard: list[np.ndarray] = []
    for stream, (shards, count) in enumerate(zip(stream_shards, counts)):
        total = sum(n for _, n in shards)
        first = shards[0][0] if shards else 0
        copies, remainder = divmod(count, total) if total else (0, 0)
        local = np.tile(np.arange(total, dtype=np.int64), copies)
        if remainder:
            extra = _rng(seed, epoch, 2, stream).choice(total, size=remainder, replace=False)
            local = np.concatenate([local, extra.astype(np.int64)])
        local.sort(kind="stable")
        bounds = np.cumsum([0] + [n for _, n in shards])
        cuts = np.searchsorted(local, bounds)
        for k in range(len(shards)):
            per_shard.append(local[cuts[k] : cuts[k + 1]] + first)
    return per_shard


def epoch_order(
    shard_samples: list[np.ndarray],
    seed: int,
    epoch: int,
    partitions: int,
    window: int,
    shuffle: bool = True,
) -> np.ndarray:
    """The global order of sample ids for one epoch (see the module docstring). Without
    `shuffle` it is the data set's own order."""
    shard_order = np.arange(len(shard_samples))
    if shuffle:
        shard_order = _rng(seed, epoch, 0).permutation(len(shard_samples))
    else:
        partitions = 1
    parts = [shard_samples[k] for k in shard_order]
    sequence = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    total = len(sequence)
    partitions = max(1, min(partitions, total)) if total else 1
    base, extra = divmod(total, partitions)
    sizes = np.full(partitions, base, dtype=np.int64)
    sizes[:extra] += 1
    starts = np.concatenate([[0], np.cumsum(sizes)])
    if shuffle and window > 1 and total:
        partition_of = np.repeat(np.arange(partitions), sizes)
        within = np.arange(total) - starts[partition_of]
        windows_per_partition = (base + 1) // window + 1
        window_id = partition_of * windows_per_partition + within // window
        keys = window_id + _rng(seed, epoch, 1).random(total)
        sequence = sequence[np.argsort(keys, kind="stable")]
    grid = np.full((partitions, base + 1), -1, dtype=np.int64)
    for p in range(partitions):  # P is small (tens to thousands)
        grid[p, : sizes[p]] = sequence[starts[p] : starts[p + 1]]
    interleaved = grid.T.reshape(-1)
    return interleaved[interleaved >= 0]


def rank_positions(total: int, start: int, rank: int, world: int) -> np.ndarray:
    """Global positions read by `rank` of `world`, from position `start` to the epoch's end.

    Every rank gets the same count, ceil((total - start) / world); the few positions past the
    end wrap around to the first unread positions (at most world - 1 repeated samples).
    """
    remaining = max(total - start, 0)
    per_rank = -(-remaining // world)
    steps = np.arange(per_rank, dtype=np.int64) * world + rank
    if remaining:
        steps %= remaining
    return start + steps


def worker_positions(
    positions: np.ndarray, batch_size: int, worker: int, workers: int
) -> np.ndarray:
    """The part of a rank's positions read by one DataLoader worker: batches worker,
    worker + workers, ... (the order in which DataLoader collects batches from its workers)."""
    if workers <= 1:
        return positions
    batch = np.arange(len(positions)) // batch_size
    return positions[batch % workers == worker]
