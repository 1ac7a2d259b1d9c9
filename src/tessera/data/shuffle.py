"""Deterministic, elastic sample order: one global order per epoch, split among ranks and workers.

The global order depends only on the seed, the epoch, the data set's shards, a fixed number of
canonical partitions P and a block size K (never on the number of ranks or workers):

1. Shuffle the order of the shards.
2. Lay the shards' samples end to end and cut the sequence into P contiguous partitions of
   whole blocks of K samples; each partition covers a run of consecutive shards.
3. Inside each partition, shuffle samples within windows of `window` consecutive samples.
4. Cut each partition into blocks of K samples and interleave the blocks round-robin, visiting
   the partitions in a random order (the same for every round of the epoch): block b of the
   global order comes from partition visit[b mod P].

Ranks take whole blocks in turn (rank r of W: blocks r, r + W, ...), so when W divides P a rank
only reads P / W partitions and downloads about 1/W of the shards; a batch of B samples needs
about B / K partitions. See docs/data/shuffle.md for the trade-off.
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
    block: int = 1,
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
    if not total:
        return sequence
    block = max(block, 1)
    # Partitions hold whole blocks of `block` samples (only the data set's very last block may be
    # short and goes last), so every block of global positions comes from one partition.
    full_blocks, short = divmod(total, block)
    partitions = max(1, min(partitions, full_blocks))
    base, extra = divmod(full_blocks, partitions)
    counts = np.full(partitions, base, dtype=np.int64)
    counts[:extra] += 1
    first_block = np.concatenate([[0], np.cumsum(counts)[:-1]])
    if shuffle and window > 1:  # windows never cross partitions: a partition keeps its shards
        rng = _rng(seed, epoch, 1)
        sequence = sequence.copy()
        for start, count in zip((first_block * block).tolist(), (counts * block).tolist()):
            sequence[start : start + count] = _window_shuffle(
                sequence[start : start + count], window, rng
            )
        sequence[total - short :] = rng.permutation(sequence[total - short :])
    visit = np.arange(partitions)
    if shuffle:
        visit = _rng(seed, epoch, 3).permutation(partitions)
    rounds = np.arange(int(counts.max()) if full_blocks else 0)[:, None]
    grid = first_block[visit][None, :] + rounds  # block ids: round x visited partition
    grid = grid[rounds < counts[visit][None, :]]  # drop partitions with fewer blocks
    elements = (grid[:, None] * block + np.arange(block)[None, :]).reshape(-1)
    if short:
        elements = np.concatenate([elements, np.arange(total - short, total)])
    return sequence[elements]


def _window_shuffle(sequence: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    """Shuffle within consecutive windows of `window` samples, in linear time."""
    full = len(sequence) // window * window
    head = rng.permuted(sequence[:full].reshape(-1, window), axis=1).reshape(-1)
    tail = rng.permutation(sequence[full:])
    return np.concatenate([head, tail])


def rank_positions(total: int, start: int, rank: int, world: int, block: int = 1) -> np.ndarray:
    """Global positions read by `rank` of `world`, from position `start` to the epoch's end.

    Whole rounds of `world` blocks go block by block to the ranks in turn; the remaining tail is
    dealt sample by sample. Every rank gets the same count, ceil((total - start) / world); the
    few positions past the end wrap around to the first unread ones (at most world - 1 repeats).
    """
    remaining = max(total - start, 0)
    block = max(block, 1)
    rounds = remaining // (world * block)
    full = rounds * world * block
    in_blocks = (
        (np.arange(rounds, dtype=np.int64)[:, None] * world + rank) * block
        + np.arange(block, dtype=np.int64)[None, :]
    ).reshape(-1)
    tail_count = -(-(remaining - full) // world)
    tail = full + np.arange(tail_count, dtype=np.int64) * world + rank
    steps = np.concatenate([in_blocks, tail])
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
