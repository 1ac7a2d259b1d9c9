"""Cleaning from and to a real S3-compatible object store (moto) on loopback: the inputs are
listed and streamed through fsspec, the parts, report and manifest are written as objects,
and the parts hold what the same clean of local copies holds."""

from __future__ import annotations

import gzip
import json

import streaming_support
import zstandard
from clean_support import part_bytes
from streaming_support import isolated_cache, s3_options  # noqa: F401

from tessera.cli.main import main
from tessera.data.clean.planted import plant, synthetic_documents

s3_server = streaming_support.s3_server


def test_clean_from_and_to_s3(s3_server, tmp_path):
    import boto3
    import s3fs

    options = s3_options(s3_server.url)
    boto3.client(
        "s3",
        endpoint_url=s3_server.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket="corpus")
    documents = plant(synthetic_documents(60, seed=31), seed=32).documents
    local = tmp_path / "raw"
    local.mkdir()
    lines = [json.dumps({"text": t}) + "\n" for t in documents]
    (local / "a.jsonl").write_text("".join(lines[::2]))
    (local / "b.jsonl.gz").write_bytes(gzip.compress("".join(lines[1::2]).encode()))
    fs = s3fs.S3FileSystem(**options)
    for name in ("a.jsonl", "b.jsonl.gz"):
        fs.put_file(str(local / name), f"corpus/raw/{name}")

    flags = ["--no-progress", "--storage-options", json.dumps(options), "--license", "CC0-1.0"]
    assert main(["data", "clean", "s3://corpus/raw/", "--out", "s3://corpus/clean", *flags]) == 0
    assert (
        main(["data", "clean", str(local), "--out", str(tmp_path / "local"), "--no-progress"]) == 0
    )
    names = sorted(p.rsplit("/", 1)[1] for p in fs.ls("corpus/clean"))
    assert names == [
        "part-00000.jsonl.zst",
        "part-00001.jsonl.zst",
        "provenance.json",
        "report.json",
        "report.md",
    ]

    def unpack(data: bytes) -> bytes:
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)

    remote = [unpack(fs.cat_file(f"corpus/clean/{n}")) for n in names[:2]]
    same = [unpack(data) for data in part_bytes(tmp_path / "local").values()]
    assert remote == [part.replace(str(local).encode(), b"s3://corpus/raw") for part in same]
    manifest = json.loads(fs.cat_file("corpus/clean/provenance.json"))
    assert [s["path"] for s in manifest["sources"]] == [
        "s3://corpus/raw/a.jsonl",
        "s3://corpus/raw/b.jsonl.gz",
    ]
    assert manifest["sources"][1]["bytes"] == (local / "b.jsonl.gz").stat().st_size
    assert manifest["license"] == "CC0-1.0"
    assert main(["data", "clean", "s3://corpus/raw/", "--out", "s3://corpus/clean", *flags]) == 2
