"""`StreamingDataset`: shards streamed from storage into a local cache, read in a deterministic,
elastic order, resumable at the exact sample. Works with a plain `torch.utils.data.DataLoader`.

Use with a DataLoader: pass the DataLoader's `batch_size` here too, so that the batches the
DataLoader collects round-robin from its workers come out in the global order; call
`set_epoch(epoch)` before each epoch (as with `DistributedSampler`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.context import get_spawning_popen
from typing import Any

import numpy as np
import torch.utils.data
import xxhash

from tessera.core.errors import DataError
from tessera.core.world import current_world
from tessera.data.cache import ShardCache
from tessera.data.columns import parse_columns
from tessera.data.format import (
    INDEX_NAME,
    SampleDecoder,
    columns_hash,
    dump_index,
    load_index,
    shard_hash,
)
from tessera.data.reader import ShardFile
from tessera.data.shuffle import epoch_order, epoch_samples, rank_positions, worker_positions
from tessera.data.storage import Storage, write_atomic
from tessera.data.streams import Stream, samples_per_epoch
from tessera.data.writer import parse_size

logger = logging.getLogger(__name__)
STATE_VERSION = 1


class StreamingDataset(torch.utils.data.IterableDataset):
    """Samples of one or more shard data sets (see docs/data/streaming.md for every option).

    `remote` is where the shards live (folder or fsspec URL), `local` the cache folder; with only
    `local`, the data set is read in place. `streams` mixes several data sets instead.
    `partitions` fixes the global order independently of the number of ranks (keep it a multiple
    of every world size you use); `shuffle_window` is the in-partition shuffle window in samples.
    """

    def __init__(
        self,
        remote: str | None = None,
        local: str | None = None,
        split: str | None = None,
        *,
        streams: list[Stream] | None = None,
        shuffle: bool = True,
        seed: int = 0,
        batch_size: int | None = None,
        partitions: int = 64,
        block_size: int = 32,
        shuffle_window: int | None = None,
        epoch_size: int | None = None,
        cache_limit: int | str | None = None,
        prefetch: int = 8,
        download_threads: int = 8,
        download_retries: int = 5,
        download_backoff: float = 0.25,
        verify: bool = True,
        verify_samples: bool = False,
        on_corrupt: str = "fail",
        decode_images: bool = True,
        transform: Callable[[dict[str, Any]], Any] | None = None,
        storage_options: dict[str, Any] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        if streams is None:
            streams = [Stream(remote, local, split, storage_options=dict(storage_options or {}))]
        elif remote is not None or local is not None:
            raise DataError("Give either remote/local/split or streams, not both.")
        if on_corrupt not in ("fail", "skip"):
            raise DataError(f"on_corrupt={on_corrupt!r}; accepted values: 'fail', 'skip'.")
        if partitions < 1 or block_size < 1 or (batch_size is not None and batch_size < 1):
            raise DataError("partitions, block_size and batch_size must be positive integers.")
        self.streams = streams
        self.shuffle, self.seed, self.batch_size = shuffle, int(seed), batch_size
        self.partitions, self.epoch_size = int(partitions), epoch_size
        self.block_size = int(block_size)
        if shuffle and batch_size is not None and batch_size % block_size:
            logger.warning(
                "batch_size %d is not a multiple of block_size %d: the global order is still the "
                "same for any number of ranks, but steps group it differently per world size.",
                batch_size, block_size,
            )  # fmt: skip
        self.prefetch, self.download_threads = max(prefetch, 0), max(download_threads, 1)
        self.verify, self.verify_samples, self.on_corrupt = verify, verify_samples, on_corrupt
        self.transform = transform
        self.rank, self.world_size = rank, world_size
        limit = parse_size(cache_limit, "cache_limit") if cache_limit is not None else None

        self.caches: list[ShardCache] = []
        self.shards: list[dict[str, Any]] = []
        self.stream_shards: list[list[tuple[int, int]]] = []
        columns: dict[str, str] | None = None
        first = 0
        for stream in streams:
            source = Storage(
                stream.source_url(), stream.storage_options, download_retries, download_backoff
            )
            index = self._load_index(stream, source)
            if columns is None:
                columns = index["columns"]
            elif index["columns"] != columns:
                raise DataError(
                    f"Stream {stream.name} has columns {index['columns']}, but the first stream "
                    f"has {columns}; mixed streams must have the same columns."
                )
            shards = index["shards"]
            cache = ShardCache(
                source, stream.cache_folder(), shards, limit, verify, on_corrupt,
                read_in_place=stream.remote is None,
            )  # fmt: skip
            cache.sweep_temporary()  # files a killed process left half-written
            self.caches.append(cache)
            entries = []
            for shard in shards:
                entries.append((first, int(shard["samples"])))
                first += int(shard["samples"])
            self.stream_shards.append(entries)
            self.shards.extend(shards)
        assert columns is not None
        self.columns = columns
        self.decoder = SampleDecoder(parse_columns(columns), decode_images)
        self.layout = columns_hash(parse_columns(columns))
        self.sizes = [sum(n for _, n in entries) for entries in self.stream_shards]
        self.counts = samples_per_epoch(streams, self.sizes, epoch_size)
        self.num_samples = sum(self.counts)
        self.shard_first = np.array([f for entries in self.stream_shards for f, _ in entries])
        self.shard_cache = [c for c, s in zip(self.caches, self.stream_shards) for _ in s]
        self.shard_offset = np.array(
            [k for c, s in zip(self.caches, self.stream_shards) for k in range(len(s))]
        )
        mean = max(1, self.num_samples // max(len(self.shards), 1))
        self.shuffle_window = int(shuffle_window) if shuffle_window else 2 * mean
        self.fingerprint = shard_hash(
            "|".join(
                f"{s.get('path')}:{s['samples']}:{s.get('raw_hash')}" for s in self.shards
            ).encode()
            + f"|{self.counts}".encode()
        )
        # (epoch, resume epoch or -1, resume position) in memory shared with DataLoader workers,
        # so set_epoch/load_state_dict reach persistent workers too
        self._position = multiprocessing.RawArray("q", [0, -1, 0])
        self._order_cache: tuple[int, np.ndarray] | None = None

    def _load_index(self, stream: Stream, source: Storage) -> dict[str, Any]:
        where = source.join(INDEX_NAME)
        data = source.read_bytes(INDEX_NAME, "index")
        index = load_index(data, where)
        folder = stream.cache_folder()
        if stream.remote is not None:  # keep a copy in the cache; refuse one of another data set
            os.makedirs(folder, exist_ok=True)
            marker = os.path.join(folder, ".source")
            if os.path.exists(marker):
                with open(marker, encoding="utf-8") as file:
                    recorded = file.read().strip()
                if recorded != source.url:
                    raise DataError(
                        f"The cache folder {folder} holds shards of {recorded}, not {source.url}; "
                        "give each data set (and split) its own `local` folder."
                    )
            else:
                write_atomic(marker, source.url.encode(), durable=False)
            write_atomic(os.path.join(folder, INDEX_NAME), dump_index(index), durable=False)
        return index

    # ---- epoch, order, resume -------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return int(self._position[0])

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._position[0] = int(value)

    @property
    def _resume(self) -> tuple[int, int] | None:
        epoch, start = int(self._position[1]), int(self._position[2])
        return None if epoch < 0 else (epoch, start)

    @_resume.setter
    def _resume(self, value: tuple[int, int] | None) -> None:
        self._position[1], self._position[2] = value if value is not None else (-1, 0)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if get_spawning_popen() is None:  # a plain copy (not a worker start): plain values
            state["_position"] = list(self._position)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state["_position"], list):
            state["_position"] = multiprocessing.RawArray("q", state["_position"])
        self.__dict__.update(state)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration follows; a pending resume position
        applies only to the epoch it was saved in."""
        self.epoch = int(epoch)
        if self._resume is not None and self._resume[0] != self.epoch:
            self._resume = None

    def order(self, epoch: int | None = None) -> np.ndarray:
        """The global order of sample ids for an epoch (identical for any number of ranks)."""
        epoch = self.epoch if epoch is None else epoch
        if self._order_cache is None or self._order_cache[0] != epoch:
            per_shard = epoch_samples(self.stream_shards, self.counts, self.seed, epoch)
            order = epoch_order(
                per_shard,
                self.seed,
                epoch,
                self.partitions,
                self.shuffle_window,
                self.shuffle,
                self.block_size,
            )
            self._order_cache = (epoch, order)
        return self._order_cache[1]

    def state_dict(self, samples_seen_in_epoch: int) -> dict[str, Any]:
        """The exact position: `samples_seen_in_epoch` counts samples consumed by all ranks."""
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "samples_seen": int(samples_seen_in_epoch),
            "seed": self.seed,
            "partitions": self.partitions,
            "block_size": self.block_size,
            "shuffle": self.shuffle,
            "shuffle_window": self.shuffle_window,
            "num_samples": self.num_samples,
            "fingerprint": self.fingerprint,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position: the next iteration starts at the next unseen sample.
        A state that does not fit this data set is refused, never silently ignored."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise DataError(
                f"Data position state has version {state.get('version') if isinstance(state, dict) else state!r}; "  # noqa: E501
                f"this Tessera reads version {STATE_VERSION}."
            )
        mine = self.state_dict(0)
        for key in (
            "seed",
            "partitions",
            "shuffle",
            "shuffle_window",
            "num_samples",
            "fingerprint",
        ):
            if state.get(key) != mine[key]:
                raise DataError(
                    f"Cannot resume the data position: the checkpoint's {key} is "
                    f"{state.get(key)!r} but this data set's is {mine[key]!r}. Resume with the "
                    "same data, seed, partitions and shuffle settings (the number of ranks and "
                    "workers may differ)."
                )
        seen = int(state["samples_seen"])
        if not 0 <= seen <= self.num_samples:
            raise DataError(
                f"The checkpoint's data position {seen} is outside the epoch of "
                f"{self.num_samples} samples."
            )
        self.epoch = int(state["epoch"])
        self._resume = (self.epoch, seen)

    def _start(self) -> int:
        return self._resume[1] if self._resume and self._resume[0] == self.epoch else 0

    def __len__(self) -> int:
        world = current_world(self.rank, self.world_size)
        return -(-(self.num_samples - self._start()) // world.size)

    # ---- reading --------------------------------------------------------------------------
    def plan(self, worker: int = 0, workers: int = 1) -> np.ndarray:
        """Sample ids this process reads this epoch, in order."""
        return self.order()[self._positions(worker, workers)]

    def _positions(self, worker: int, workers: int) -> np.ndarray:
        """Positions in the epoch's global order that this process reads, in order."""
        world = current_world(self.rank, self.world_size)
        order = self.order()
        block = self.block_size if self.shuffle else 1
        positions = rank_positions(len(order), self._start(), world.rank, world.size, block)
        if workers > 1:
            if self.batch_size is None:
                logger.warning(
                    "StreamingDataset(batch_size=None) with %d DataLoader workers: batches "
                    "will not follow the global order; pass the DataLoader's batch_size.",
                    workers,
                )
            positions = worker_positions(positions, self.batch_size or 1, worker, workers)
        return positions

    def __iter__(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        world = current_world(self.rank, self.world_size)
        if worker == 0 and world.rank == 0 and len(self.shards) < workers * world.size:
            logger.warning(
                "%d shards for %d ranks x %d workers: some readers share shards and throughput "
                "suffers; write smaller shards (shard_size) for this many readers.",
                len(self.shards), world.size, workers,
            )  # fmt: skip
        positions = self._positions(worker, workers)
        ids = self.order()[positions]
        if len(ids) == 0:
            return
        batch = self.batch_size or 1
        reseed = info is not None  # a worker's random streams follow the batch it builds
        shard_of = np.searchsorted(self.shard_first, ids, side="right") - 1
        within = (ids - self.shard_first[shard_of]).tolist()
        sequence = shard_of.tolist()
        unique, first_use = np.unique(shard_of, return_index=True)
        use_order = unique[np.argsort(first_use)].tolist()
        last_use = {s: i for i, s in enumerate(sequence)}
        rank_of = {s: i for i, s in enumerate(use_order)}
        open_files: dict[int, ShardFile] = {}
        careful: set[int] = set()  # shards whose samples need checks (known bad, or verify_samples)
        lost: set[int] = set()  # damaged shards none of whose samples can be read (skipped)
        futures: dict[int, Future[str]] = {}
        submitted = 0
        transform = self.transform
        pool = ThreadPoolExecutor(self.download_threads, thread_name_prefix="tessera-prefetch")
        try:
            for position, (shard, index) in enumerate(zip(sequence, within)):
                if reseed and position % batch == 0:
                    _seed_worker_for(self.seed, self.epoch, int(positions[position]))
                if shard in lost:
                    continue
                file = open_files.get(shard)
                if file is None:
                    ahead = rank_of[shard] + 1 + self.prefetch
                    while submitted < min(ahead, len(use_order)):
                        upcoming = use_order[submitted]
                        futures[upcoming] = pool.submit(self._local_path, upcoming)
                        submitted += 1
                    opened = self._open(shard, futures.pop(shard, None))
                    if opened is None:
                        lost.add(shard)
                        continue
                    file = open_files[shard] = opened
                    cache = self.shard_cache[shard]
                    if self.verify_samples or int(self.shard_offset[shard]) in cache.bad_samples:
                        careful.add(shard)
                sample = self._read(file, shard, index) if shard in careful else file.get(index)
                if last_use[shard] == position:
                    open_files.pop(shard).close()
                if sample is not None:
                    yield sample if transform is None else transform(sample)
        finally:
            for file in open_files.values():
                file.close()
            pool.shutdown(wait=False, cancel_futures=True)

    def _local_path(self, shard: int) -> str:
        return self.shard_cache[shard].path(int(self.shard_offset[shard]))

    def _open(self, shard: int, future: Future[str] | None) -> ShardFile | None:
        """The shard's file; None when it is damaged beyond use (on_corrupt='skip')."""
        path = future.result() if future is not None else self._local_path(shard)
        cache = self.shard_cache[shard]
        return cache.open(int(self.shard_offset[shard]), path, self.decoder, self.layout)

    def _read(self, file: ShardFile, shard: int, index: int) -> dict[str, Any] | None:
        cache = self.shard_cache[shard]
        local = int(self.shard_offset[shard])
        if local in cache.bad_samples:
            bad = cache.bad_samples[local]
            if bad is None or index in bad:
                return None
        if self.verify_samples and not file.check(index):
            cache._corrupt(local, file.name, [index], "fails its checksum when read")
            cache.bad_samples.setdefault(local, set()).add(index)  # type: ignore[union-attr]
            return None
        return file.get(index)


def _seed_worker_for(seed: int, epoch: int, position: int) -> None:
    """Seed a DataLoader worker's Python, NumPy and torch RNGs for the batch starting at global
    `position`: a transform that draws random numbers draws the same ones for the same batch
    with any number of workers and after a resume mid-epoch."""
    value = xxhash.xxh3_64_intdigest(struct.pack("<qqq", seed, epoch, position)) >> 1
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.default_generator.manual_seed(value)  # torch.manual_seed also seeds devices: slow
