"""Streaming benchmark: Tessera vs mosaicml-streaming vs litdata, in one run, same machine.

Each library writes its own format from the same samples (Fashion-MNIST train as PNG bytes, and
Tiny Shakespeare as 128-token windows), then reads them in fresh subprocesses, arms interleaved:
cold cache from an S3-compatible server on loopback (moto), then warm cache, with 0, 2 and 4
DataLoader workers; then resume at 90% of an epoch. Tessera runs under this python, the peers
under the peers venv (../shared/peers/make-peer-venv /tmp/peers).

    python benchmarks/streaming_benchmark.py --peers-python /tmp/peers/bin/python --repeats 3
Writes benchmarks/results/streaming.md (tables) and the raw numbers beside the work folder.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
SIDES = str(HERE / "streaming_sides.py")
LIBS = ("tessera", "mds", "litdata")
DATASETS = ("fmnist", "text")
SHARD_BYTES = {"fmnist": 512 * 1024, "text": 256 * 1024}


def make_samples(work: Path) -> dict[str, int]:
    """Pickled sample lists for both data sets; returns their sizes."""
    sizes = {}
    fmnist = work / "fmnist.pkl"
    if not fmnist.exists():
        from PIL import Image

        sys.path.insert(0, str(HERE.parent / "src"))
        from tessera.data.fashion_mnist import read_idx

        images = read_idx(SHARED / "fashion-mnist" / "train-images-idx3-ubyte.gz")
        labels = read_idx(SHARED / "fashion-mnist" / "train-labels-idx1-ubyte.gz")
        samples = []
        for i in range(len(labels)):
            out = io.BytesIO()
            Image.fromarray(images[i]).save(out, format="PNG")
            samples.append({"image": out.getvalue(), "label": int(labels[i]), "id": i})
        fmnist.write_bytes(pickle.dumps(samples))
    text = work / "text.pkl"
    if not text.exists():
        data = np.frombuffer((SHARED / "tinyshakespeare" / "input.txt").read_bytes(), np.uint8)
        tokens = data.astype(np.uint16)
        starts = range(0, len(tokens) - 128, 32)
        samples = [{"tokens": tokens[s : s + 128].copy(), "id": i} for i, s in enumerate(starts)]
        text.write_bytes(pickle.dumps(samples))
    for name in DATASETS:
        sizes[name] = len(pickle.loads((work / f"{name}.pkl").read_bytes()))
    return sizes


def run_side(python: str, args: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run(
        [python, SIDES, *args], capture_output=True, text=True, env=env, timeout=600
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def upload(folder: Path, bucket: str, prefix: str, endpoint: str) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    for path in folder.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder)}")


def versions(peers: str) -> dict[str, str]:
    import torch

    code = (
        "import streaming, litdata, torch, json;"
        "print(json.dumps({'mosaicml-streaming': streaming.__version__,"
        " 'litdata': litdata.__version__, 'peer torch': torch.__version__}))"
    )
    peer = json.loads(subprocess.run([peers, "-c", code], capture_output=True, text=True).stdout)
    return {"tessera torch": torch.__version__, "python": platform.python_version(), **peer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers-python", default="/tmp/peers/bin/python")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="0,2,4")
    parser.add_argument("--work", default="/tmp/tessera-streaming-bench")
    parser.add_argument("--libs", default=",".join(LIBS))
    parser.add_argument("--out", default=str(HERE / "results" / "streaming.md"))
    args = parser.parse_args()
    libs = tuple(args.libs.split(","))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pythons = {"tessera": sys.executable, "mds": args.peers_python, "litdata": args.peers_python}
    sizes = make_samples(work)

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = dict(
        os.environ,
        BENCH_S3_ENDPOINT=endpoint,
        S3_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ALLOW_HTTP="true",  # litdata's obstore downloader refuses http:// endpoints otherwise
        TESSERA_CACHE=str(work / "home"),
    )
    import boto3

    boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    ).create_bucket(Bucket="bench")  # fmt: skip

    results: dict = {"write": {}, "read": [], "resume": []}
    for dataset in DATASETS:
        for lib in LIBS:
            out = work / "out" / f"{lib}-{dataset}"
            shutil.rmtree(out, ignore_errors=True)
            side = ["write", lib, dataset, str(work / f"{dataset}.pkl"), str(out)]
            written = run_side(pythons[lib], [*side, str(SHARD_BYTES[dataset])], env)
            upload(out, "bench", f"{lib}-{dataset}", endpoint)
            results["write"][f"{lib}-{dataset}"] = written
            print("write", lib, dataset, written, flush=True)

    per_shard = {
        d: sizes[d] // max(1, results["write"][f"tessera-{d}"]["shards"]) for d in DATASETS
    }
    worker_counts = [int(w) for w in args.workers.split(",")]
    for repeat in range(args.repeats):
        order = libs[repeat % len(libs) :] + libs[: repeat % len(libs)]
        for workers in worker_counts:
            for dataset in DATASETS:
                for lib in order:
                    cache = work / "cache" / f"{lib}-{dataset}-{workers}"
                    shutil.rmtree(cache, ignore_errors=True)
                    url = f"s3://bench/{lib}-{dataset}"
                    side = ["read", lib, dataset, url, str(cache), str(workers)]
                    side.append(str(per_shard[dataset]))
                    cold = run_side(pythons[lib], side, env)
                    warm = run_side(pythons[lib], side, env)
                    row = {"lib": lib, "dataset": dataset, "workers": workers, "repeat": repeat}
                    results["read"].append(row | {"cache": "cold", **cold})
                    results["read"].append(row | {"cache": "warm", **warm})
                    shutil.rmtree(cache, ignore_errors=True)
                    print(lib, dataset, workers, "cold", cold, "warm", warm, flush=True)
        for lib in order:
            cache = work / "cache" / f"{lib}-resume"
            shutil.rmtree(cache, ignore_errors=True)
            url = f"s3://bench/{lib}-fmnist"
            state = work / f"{lib}-state.json"
            common = [lib, "fmnist", url, str(cache), "2", str(per_shard["fmnist"])]
            run_side(
                pythons[lib], ["prepare-resume", *common, str(state), str(sizes["fmnist"])], env
            )
            resumed = run_side(pythons[lib], ["read", *common, "--resume", str(state)], env)
            results["resume"].append({"lib": lib, "repeat": repeat, **resumed})
            print(lib, "resume", resumed, flush=True)
            shutil.rmtree(cache, ignore_errors=True)
    server.stop()
    results["meta"] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), no GPU",
        "versions": versions(args.peers_python),
        "sizes": sizes,
        "command": "python benchmarks/streaming_benchmark.py " + " ".join(sys.argv[1:]),
    }
    (work / "streaming-results.json").write_text(json.dumps(results, indent=1))
    Path(args.out).write_text(report(results))
    print(f"wrote {args.out}")


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def report(results: dict) -> str:
    meta = results["meta"]
    lines = [
        "# Streaming benchmark: Tessera vs mosaicml-streaming vs litdata",
        "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}; machine: {meta['machine']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"- data: Fashion-MNIST train ({meta['sizes']['fmnist']:,} PNG-encoded images + label) "
        f"and Tiny Shakespeare ({meta['sizes']['text']:,} windows of 128 uint16 tokens); shards "
        "of 512 KiB (images) and 256 KiB (text), no compression, each library in its own format",
        "- reading: shuffle on, batch 256, same collate, prefetch 2 shards/chunks each, S3 = moto "
        "on 127.0.0.1; cold = empty cache, warm = the cache the cold run filled; every run a "
        "fresh process; medians of the repeats",
        "",
        "## Writing",
        "",
        "| data | library | write s | shards |",
        "| --- | --- | ---: | ---: |",
    ]
    for key, row in results["write"].items():
        lib, dataset = key.split("-")
        lines.append(f"| {dataset} | {lib} | {row['write_s']:.2f} | {row['shards']} |")
    for dataset in DATASETS:
        lines += [
            "",
            f"## Reading {dataset}",
            "",
            "| workers | cache | library | epoch samples/s | steady samples/s | steady ratio to "
            "faster peer | first batch s | peak RSS MiB |",
            "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        reads = [r for r in results["read"] if r["dataset"] == dataset]
        for workers in sorted({r["workers"] for r in reads}):
            for cache in ("warm", "cold"):
                cell = {
                    lib: [
                        r
                        for r in reads
                        if r["workers"] == workers and r["cache"] == cache and r["lib"] == lib
                    ]
                    for lib in LIBS
                }
                steady = {lib: _median(rows, "steady_samples_per_s") for lib, rows in cell.items()}
                best_peer = max(steady["mds"], steady["litdata"])
                for lib in LIBS:
                    rows = cell[lib]
                    ratio = f"{steady[lib] / best_peer:.2f}x" if lib == "tessera" else ""
                    lines.append(
                        f"| {workers} | {cache} | {lib} | {_median(rows, 'samples_per_s'):,.0f} | "
                        f"{steady[lib]:,.0f} | {ratio} | {_median(rows, 'first_batch_s'):.2f} | "
                        f"{_median(rows, 'rss_mb'):,.0f} |"
                    )
    lines += [
        "",
        "## Resume at 90% of an epoch (Fashion-MNIST, 2 workers, warm-up excluded)",
        "",
        "| library | first batch after resume at 90% s | first batch at epoch start s (warm, 2 "
        "workers) | resumed batch is the right one |",
        "| --- | ---: | ---: | --- |",
    ]
    for lib in LIBS:
        rows = [r for r in results["resume"] if r["lib"] == lib]
        start = [
            r
            for r in results["read"]
            if r["lib"] == lib and r["dataset"] == "fmnist" and r["workers"] == 2
            and r["cache"] == "warm"
        ]  # fmt: skip
        start_s = f"{_median(start, 'first_batch_s'):.2f}" if start else "n/a"
        correct = sum(r["resume_correct"] for r in rows)
        lines.append(
            f"| {lib} | {_median(rows, 'first_batch_s'):.2f} | {start_s} | "
            f"{correct}/{len(rows)} runs |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
