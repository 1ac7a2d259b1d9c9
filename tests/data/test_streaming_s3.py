"""Streaming from a real S3-compatible server (moto) on loopback, through a proxy that cuts
connections mid-download; shared cache across ranks and workers; remote errors named clearly."""

from __future__ import annotations

import multiprocessing
import os

import pytest
import streaming_support
import torch
from streaming_support import fashion_samples, isolated_cache, s3_options  # noqa: F401

from tessera.core.errors import DataError
from tessera.data.dataset import StreamingDataset
from tessera.data.writer import ShardWriter

s3_server = streaming_support.s3_server
COUNT = 1500
BATCH = 10


@pytest.fixture(scope="module")
def s3_data(s3_server):
    """Fashion-MNIST samples written straight to s3://fashion/test in about 15 shards."""
    import boto3

    options = s3_options(s3_server.url)
    boto3.client(
        "s3", endpoint_url=s3_server.url, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    ).create_bucket(Bucket="fashion")  # fmt: skip
    columns = {"image": "bytes", "label": "int", "id": "int"}
    url = "s3://fashion/test"
    with ShardWriter(
        url, columns, compression="zstd", shard_size=80_000, storage_options=options
    ) as w:
        for sample in fashion_samples(COUNT):
            w.write(sample)
    return url, options


def _read_rank(url, options, cache, rank, world, queue):
    dataset = StreamingDataset(
        url, cache, storage_options=options, batch_size=BATCH, rank=rank, world_size=world
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, num_workers=2)
    queue.put((rank, [i for batch in loader for i in batch["id"].tolist()]))


def test_ranks_and_workers_share_one_cache_without_duplicate_downloads(
    s3_data, s3_server, tmp_path
):
    url, options = s3_data
    before = len(s3_server.shard_gets())
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    cache = str(tmp_path / "node-cache")
    ranks = [
        context.Process(target=_read_rank, args=(url, options, cache, r, 2, queue))
        for r in range(2)
    ]
    for process in ranks:
        process.start()
    results = dict(queue.get(timeout=120) for _ in ranks)
    for process in ranks:
        process.join(timeout=30)
        assert process.exitcode == 0
    flat = results[0] + results[1]
    assert sorted(flat) == list(range(COUNT))
    gets = s3_server.shard_gets()[before:]
    shards = StreamingDataset(url, cache, storage_options=options).shards
    assert len(gets) == len(shards) == len(set(gets))  # 4 readers, each shard downloaded once
    assert not [n for n in os.listdir(cache) if ".tmp" in n]


def test_connection_cut_mid_download_is_retried(s3_data, s3_server, tmp_path):
    url, options = s3_data
    s3_server.cuts, s3_server.cut_done = 3, 0
    dataset = StreamingDataset(url, str(tmp_path / "c"), storage_options=options, seed=3)
    ids = [s["id"] for s in dataset]
    assert s3_server.cut_done == 3  # three downloads really were cut mid-body
    assert ids == [
        s["id"] for s in StreamingDataset(url, str(tmp_path / "d"), storage_options=options, seed=3)
    ]
    assert sorted(ids) == list(range(COUNT))
    assert not [n for n in os.listdir(tmp_path / "c") if ".tmp" in n]


def test_remote_that_keeps_failing_gives_an_error_naming_the_shard(s3_data, s3_server, tmp_path):
    url, options = s3_data
    dataset = StreamingDataset(
        url,
        str(tmp_path / "c"),
        storage_options=options,
        download_retries=1,
        download_backoff=0.01,
    )
    s3_server.cuts = 10_000
    try:
        with pytest.raises(
            DataError,
            match=r"Could not read s3://fashion/test/shard\.\d+\.tshd\.zst after 2 attempts",
        ):
            next(iter(dataset))
    finally:
        s3_server.cuts = 0
    assert not [n for n in os.listdir(tmp_path / "c") if n.endswith(".tshd")]  # nothing partial


def test_missing_bucket_and_index_are_named(s3_server, tmp_path):
    options = s3_options(s3_server.url)
    with pytest.raises(DataError, match=r"index s3://no-such-bucket/x/index.json does not exist"):
        StreamingDataset("s3://no-such-bucket/x", str(tmp_path / "a"), storage_options=options)


def test_wrong_credentials_are_reported(s3_data, s3_server, tmp_path):
    from moto import settings

    url, _ = s3_data
    previous = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # make the server check credentials
    try:
        with pytest.raises(DataError, match=r"Access to s3://fashion/test/index.json was refused"):
            StreamingDataset(
                url, str(tmp_path / "a"), storage_options=s3_options(s3_server.url, key="nobody")
            )
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = previous


def test_cache_of_another_data_set_is_refused(s3_data, tmp_path):
    url, options = s3_data
    StreamingDataset(url, str(tmp_path / "c"), storage_options=options)
    with ShardWriter(str(tmp_path / "elsewhere"), {"id": "int"}) as writer:
        writer.write({"id": 1})
    with pytest.raises(DataError, match="holds shards of s3://fashion/test"):
        StreamingDataset(str(tmp_path / "elsewhere"), str(tmp_path / "c"))


def test_cli_inspects_and_verifies_an_s3_data_set(s3_data, capsys):
    import json

    from tessera.cli.main import main

    url, options = s3_data
    args = ["data", "inspect", url, "--verify", "--json", "--storage-options", json.dumps(options)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert json.loads(out.split("verified")[0])["samples"] == COUNT
    assert "all checksums match" in out
