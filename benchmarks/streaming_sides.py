"""One side of the streaming benchmark, run as a subprocess by benchmarks/streaming.py.

Runs under the system python for Tessera and under the peers venv for mosaicml-streaming
("mds") and litdata; imports only the library it measures. Prints one JSON line.

    python streaming_sides.py write LIB DATASET SAMPLES.pkl OUT SHARD_BYTES
    python streaming_sides.py read LIB DATASET URL CACHE WORKERS [--resume STATE.json]
    python streaming_sides.py prepare-resume LIB DATASET URL CACHE WORKERS STATE.json
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import threading
import time

import numpy as np
import torch

BATCH = 256
SEED = 17
SEQUENCE = 128
ENDPOINT = os.environ.get("BENCH_S3_ENDPOINT", "")
CREDENTIALS = {"key": "testing", "secret": "testing"}


def columns(lib: str, dataset: str) -> dict:
    if dataset == "fmnist":
        kinds = {"tessera": "bytes", "mds": "bytes"}
        return {"image": kinds.get(lib), "label": "int", "id": "int"}
    kinds = {"tessera": "tokens:uint16", "mds": f"ndarray:uint16:{SEQUENCE}"}
    return {"tokens": kinds.get(lib), "id": "int"}


def write(lib: str, dataset: str, samples_path: str, out: str, shard_bytes: int) -> dict:
    with open(samples_path, "rb") as file:
        samples = pickle.load(file)
    start = time.perf_counter()
    if lib == "tessera":
        from tessera.data.writer import ShardWriter

        with ShardWriter(out, columns(lib, dataset), shard_size=shard_bytes) as writer:
            for sample in samples:
                writer.write(sample)
    elif lib == "mds":
        from streaming import MDSWriter

        with MDSWriter(out=out, columns=columns(lib, dataset), size_limit=shard_bytes) as writer:
            for sample in samples:
                writer.write(sample)
    else:
        from litdata.streaming.writer import BinaryWriter

        writer = BinaryWriter(out, chunk_bytes=shard_bytes)
        for i, sample in enumerate(samples):
            writer[i] = sample
        writer.done()
        writer.merge(1)
    files = [f for f in os.listdir(out) if not f.endswith(".json")]
    return {"write_s": time.perf_counter() - start, "shards": len(files)}


def collate(batch: list) -> dict:
    first = batch[0]
    out = {"id": torch.tensor([int(s["id"]) for s in batch])}
    if "image" in first:
        out["image"] = [bytes(s["image"]) for s in batch]
        out["label"] = torch.tensor([int(s["label"]) for s in batch])
    else:
        out["tokens"] = torch.from_numpy(np.stack([np.asarray(s["tokens"]) for s in batch]))
    return out


def make_loader(lib: str, url: str, cache: str, workers: int, samples_per_shard: int):
    common = {"batch_size": BATCH, "num_workers": workers, "collate_fn": collate}
    if workers:
        common["prefetch_factor"] = 2
    if lib == "tessera":
        from tessera.data.dataset import StreamingDataset

        options = {}
        if url.startswith("s3://"):
            client = {"endpoint_url": ENDPOINT, "region_name": "us-east-1"}
            options = {**CREDENTIALS, "client_kwargs": client}
        dataset = StreamingDataset(
            url, cache, seed=SEED, batch_size=BATCH, prefetch=2, storage_options=options
        )
        return dataset, torch.utils.data.DataLoader(dataset, **common)
    if lib == "mds":
        from streaming import StreamingDataLoader, StreamingDataset
        from streaming.base.util import clean_stale_shared_memory

        clean_stale_shared_memory()
        dataset = StreamingDataset(
            remote=url,
            local=cache,
            shuffle=True,
            shuffle_seed=SEED,
            batch_size=BATCH,
            predownload=2 * samples_per_shard,
        )
        return dataset, StreamingDataLoader(dataset, **common)
    from litdata import StreamingDataLoader, StreamingDataset
    from litdata.streaming import downloader

    # The loopback S3 server speaks http://; litdata's obstore path refuses plain http unless
    # told (real S3 is https). This keeps litdata on its fast obstore downloader.
    downloader._OBSTORE_CLIENT_OPTIONS = {
        **downloader._OBSTORE_CLIENT_OPTIONS,
        "allow_http": "true",
    }

    options = {}
    if url.startswith("s3://"):
        options = {
            "endpoint_url": ENDPOINT,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "region_name": "us-east-1",
        }
    else:
        url = f"local:{url}"
    dataset = StreamingDataset(
        url, cache_dir=cache, shuffle=True, seed=SEED, max_pre_download=2, storage_options=options
    )
    return dataset, StreamingDataLoader(dataset, **common)


class PeakMemory:
    """Peak of the summed RSS of this process and its children (DataLoader workers)."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.peak = 0
        self.running = True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while self.running:
            try:
                total = self.process.memory_info().rss + sum(
                    c.memory_info().rss for c in self.process.children(recursive=True)
                )
                self.peak = max(self.peak, total)
            except Exception:
                pass
            time.sleep(0.02)

    def stop(self) -> float:
        self.running = False
        return self.peak / 2**20


def read(lib, url, cache, workers, samples_per_shard, resume=None) -> dict:
    memory = PeakMemory()
    start = time.perf_counter()
    dataset, loader = make_loader(lib, url, cache, workers, samples_per_shard)
    expected = None
    if resume:
        with open(resume) as file:
            saved = json.load(file)
        expected = saved["next_ids"]
        if lib == "tessera":
            dataset.load_state_dict(saved["state"])
        else:
            loader.load_state_dict(saved["state"])
    first = None
    count = 0
    ids = None
    for batch in loader:
        if first is None:
            first = time.perf_counter()
            ids = batch["id"].tolist()
            if resume:
                break
        count += len(batch["id"])
    end = time.perf_counter()
    result = {
        "first_batch_s": first - start,
        "rss_mb": memory.stop(),
    }
    if resume:
        result["resume_correct"] = ids == expected
        return result
    steady = count - len(ids)
    result.update(
        epoch_s=end - start,
        samples=count,
        samples_per_s=count / (end - start),
        steady_samples_per_s=steady / max(end - first, 1e-9),
    )
    return result


def prepare_resume(lib, url, cache, workers, samples_per_shard, state_path, total) -> dict:
    dataset, loader = make_loader(lib, url, cache, workers, samples_per_shard)
    stop = int(0.9 * total) // BATCH
    for step, batch in enumerate(loader):
        if step == stop:
            next_ids = batch["id"].tolist()
            break
        if step == stop - 1:
            state = dataset.state_dict(stop * BATCH) if lib == "tessera" else loader.state_dict()
    with open(state_path, "w") as file:
        json.dump({"state": state, "next_ids": next_ids}, file, default=_plain)
    return {"resume_at_batch": stop}


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(type(value))


def main(argv: list[str]) -> None:
    command, lib, dataset = argv[:3]
    if command == "write":
        result = write(lib, dataset, argv[3], argv[4], int(argv[5]))
    elif command == "read":
        resume = argv[argv.index("--resume") + 1] if "--resume" in argv else None
        result = read(lib, argv[3], argv[4], int(argv[5]), int(argv[6]), resume)
    else:
        result = prepare_resume(
            lib, argv[3], argv[4], int(argv[5]), int(argv[6]), argv[7], int(argv[8])
        )
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
