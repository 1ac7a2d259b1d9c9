"""Shuffle quality vs downloads for Tessera's elastic shard-aware shuffle.

Worst case for a shard-aware shuffle: Fashion-MNIST train written sorted by label, so a shard
holds one class. For several settings (canonical partitions P, block size K, window W) measure
from the real plan of `StreamingDataset` (no shard is read):
- label entropy of a batch of 256 (bits; a uniform shuffle gives ~3.3) and distinct classes,
- shards needed for the first batch of 256 (1 rank): what a cold start must download,
- shards read by one rank of 8 over an epoch (downloads per rank, as a share of all shards).

    python benchmarks/streaming_shuffle.py   # prints a markdown table
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from tessera.data.dataset import StreamingDataset  # noqa: E402
from tessera.data.fashion_mnist import read_idx  # noqa: E402
from tessera.data.writer import ShardWriter  # noqa: E402

FASHION = HERE.parent.parent / "shared" / "data" / "fashion-mnist"
BATCH = 256


def write_sorted(out: str) -> np.ndarray:
    images = read_idx(FASHION / "train-images-idx3-ubyte.gz")
    labels = read_idx(FASHION / "train-labels-idx1-ubyte.gz")
    order = np.argsort(labels, kind="stable")
    with ShardWriter(out, {"image": "bytes", "label": "int"}, shard_size="512KiB") as writer:
        for i in order:
            writer.write({"image": images[i].tobytes(), "label": int(labels[i])})
    return labels[order]


def entropy(labels: np.ndarray) -> float:
    counts = np.bincount(labels, minlength=10) / len(labels)
    counts = counts[counts > 0]
    return float(-(counts * np.log2(counts)).sum())


def measure(folder: str, labels: np.ndarray, **settings) -> dict:
    one = StreamingDataset(local=folder, seed=3, **settings)
    ids = one.plan()
    shard_of = np.searchsorted(one.shard_first, ids, side="right") - 1
    batches = [ids[k : k + BATCH] for k in range(0, len(ids) - BATCH + 1, BATCH)]
    rank = StreamingDataset(local=folder, seed=3, rank=0, world_size=8, **settings)
    rank_shards = np.searchsorted(rank.shard_first, rank.plan(), side="right") - 1
    return {
        "entropy": np.mean([entropy(labels[b]) for b in batches]),
        "classes": np.mean([len(set(labels[b].tolist())) for b in batches]),
        "first_batch_shards": len(set(shard_of[:BATCH].tolist())),
        "rank_share": len(set(rank_shards.tolist())) / len(one.shards),
        "shards": len(one.shards),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        labels = write_sorted(folder)
        probe = StreamingDataset(local=folder)
        per_shard = probe.num_samples // len(probe.shards)
        settings = [
            ("uniform (P=1, K=1, window = whole set)", 1, 1, probe.num_samples),
            ("no in-partition shuffle (P=64, K=32, window 1)", 64, 32, 1),
            ("default (P=64, K=32, window 2 shards)", 64, 32, None),
            ("P=64, K=1, window 2 shards", 64, 1, None),
            ("P=64, K=8, window 2 shards", 64, 8, None),
            ("P=64, K=128, window 2 shards", 64, 128, None),
            ("P=64, K=32, window 8 shards", 64, 32, 8 * per_shard),
            ("P=256, K=32, window 2 shards", 256, 32, None),
            ("P=8, K=32, window 2 shards", 8, 32, None),
        ]
        print(f"{len(probe.shards)} shards of ~{per_shard} samples, sorted by label\n")
        print("| setting | batch entropy (bits) | classes per batch | shards for 1st batch "
              "| shards read per rank (8 ranks) |")  # fmt: skip
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, partitions, block, window in settings:
            row = measure(
                folder, labels, partitions=partitions, block_size=block, shuffle_window=window
            )
            print(
                f"| {name} | {row['entropy']:.2f} | {row['classes']:.1f} | "
                f"{row['first_batch_shards']} | {row['rank_share']:.0%} |"
            )


if __name__ == "__main__":
    main()
