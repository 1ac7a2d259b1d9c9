"""`tessera data download` against a real HTTP server on loopback serving the publishers' exact
bytes (rebuilt from the local copies; the network is never used): sha256 checks, resumed and
restarted downloads said aloud, clear errors; and the catalog's digests are the publishers'."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
from download_support import FileServer, published_bytes

from tessera.cli.main import main
from tessera.core.errors import DataError
from tessera.data.catalog import CATALOG, DataFile
from tessera.data.download import _fetch_file, sha256_of
from tessera.data.fashion_mnist import FashionMNIST
from tessera.data.root import find_file, find_folder

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
# zalandoresearch/fashion-mnist README (the published MD5 of each download) and the git blob
# ids of the files at the commits the catalog's URLs pin (karpathy/char-rnn, llm-foundry).
PUBLISHED_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
UPSTREAM_BLOBS = {
    "input.txt": "7dcb3a2d4cc3b48b6283dd46870bfeb78f88aac9",
    "arc_challenge.jsonl": "ce66b8dcfb4bac892a404a0dda8b4e8ed0f84b89",
    "arc_easy.jsonl": "b5fd1bf87a24246a6be67230b721541688f5c349",
    "boolq.jsonl": "f42083a58713d00ef4600118cfdf79618c269190",
    "commonsense_qa.jsonl": "f1cc16a88b05ab0934aab2ec2d02a6869e6e5520",
    "copa.jsonl": "b22f96e08ae9d0e97e1ae58f67b6425c77ef200a",
    "gsm8k.jsonl": "b6c9b4853d52572d2c0eecf6409ffff1bf41f79d",
    "jeopardy_small.jsonl": "e3a476c4e911c6043603699e389ba608f0c0cd74",
    "lambada_openai.jsonl": "4da02dd53b9e7385871d06ab855471d77b2f7dda",
    "lambada_openai_small.jsonl": "9c4c7f54750f127708ddc4c8e91da863bae77258",
    "openbook_qa.jsonl": "a8aff255a64cbc72a85252acf00df25a315686c2",
    "piqa.jsonl": "a9992adfdefde366fe7ccff871f5aa62449a09cf",
    "winograd_wsc.jsonl": "762fe030ac6938ecba438c47a04057247c6ab891",
    "winogrande.jsonl": "316e87ae4659f0c402b0f00551fdec83ab0a0986",
}


@pytest.fixture(scope="module")
def published(data_root) -> dict[str, bytes]:
    """URL path /SET/FILE -> the publisher's bytes, for every file of the catalog."""
    return {
        f"/{name}/{file.name}": published_bytes(data_root, name, file.name)
        for name, entry in CATALOG.items()
        for file in entry.files
    }


@pytest.fixture
def server(published, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")  # loopback never goes to a proxy
    monkeypatch.delenv("TESSERA_DATA_MIRROR", raising=False)
    files = FileServer(dict(published))
    yield files
    files.close()


def _download(name: str, root, server) -> list[str]:
    return ["data", "download", name, "--root", str(root), "--mirror", server.url]


def test_catalog_digests_are_the_publishers_files(published):
    for path, data in published.items():
        set_name, name = path.strip("/").split("/")
        entry = CATALOG[set_name].file(name)
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry.size, entry.sha256), path
        if set_name == "fashion-mnist":
            assert hashlib.md5(data).hexdigest() == PUBLISHED_MD5[name]
        else:
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            assert blob == UPSTREAM_BLOBS[name], path
        assert all(url.startswith(("https://", "http://")) for url in entry.urls)


def test_download_all_then_every_lookup_finds_the_data(tmp_path, server, capsys, monkeypatch):
    root = tmp_path / "root"
    assert main(_download("all", root, server)) == 0
    assert "fashion-mnist: 4 files" in capsys.readouterr().out.replace(str(root) + "/", "")
    for name, entry in CATALOG.items():
        for file in entry.files:
            assert sha256_of(root / name / file.name) == file.sha256
    assert not list(root.rglob("*.part"))
    monkeypatch.setenv("TESSERA_DATA_DIR", str(root))
    assert find_folder("eval") == root / "eval"
    assert find_file("tinyshakespeare") == root / "tinyshakespeare" / "input.txt"
    assert len(FashionMNIST("test")) == 10_000
    served = len(server.requests)
    assert main(["data", "download", "all"]) == 0  # into the data root: everything is there
    assert len(server.requests) == served
    assert "sha256 verified (13 present)" in capsys.readouterr().out


def test_lost_connection_resumes_with_a_range_request(tmp_path, server, caplog):
    server.cuts, server.cut_after = 1, 3_000_000
    with caplog.at_level(logging.WARNING):
        code = main(_download("fashion-mnist", tmp_path, server))
    assert code == 0
    assert server.file_requests("train-images-idx3-ubyte.gz") == [None, "bytes=3000000-"]
    assert "download interrupted at 3,000,000 of 26,421,880 bytes" in caplog.text
    assert sha256_of(tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz") == (
        CATALOG["fashion-mnist"].file("train-images-idx3-ubyte.gz").sha256
    )


def test_an_interrupted_download_resumes_on_the_next_run(tmp_path, server, capsys, caplog):
    server.cuts, server.cut_after = 100, 100_000  # each of the 4 attempts gets 100 kB
    command = _download("tinyshakespeare", tmp_path, server)
    assert main(command) == 2
    error = capsys.readouterr().err
    part = tmp_path / "tinyshakespeare" / "input.txt.part"
    assert "400,000 of 1,115,394 bytes are kept" in error and str(part) in error
    assert (
        part.stat().st_size == 400_000 and not (tmp_path / "tinyshakespeare" / "input.txt").exists()
    )
    server.cuts = 0
    with caplog.at_level(logging.WARNING):
        assert main(command) == 0
    assert server.file_requests("input.txt")[-1] == "bytes=400000-"
    assert "resuming input.txt at byte 400,000" in caplog.text
    assert "1 resumed" in capsys.readouterr().out


def test_a_server_that_ignores_ranges_restarts_the_file_aloud(tmp_path, server, caplog):
    folder = tmp_path / "tinyshakespeare"
    folder.mkdir()
    (folder / "input.txt.part").write_bytes(b"x" * 1000)  # a partial file from another attempt
    server.ignore_ranges = True
    with caplog.at_level(logging.WARNING):
        code = main(_download("tinyshakespeare", tmp_path, server))
    assert code == 0 and "ignores range requests: downloading input.txt again" in caplog.text
    assert sha256_of(folder / "input.txt") == CATALOG["tinyshakespeare"].files[0].sha256


def test_bytes_that_are_not_the_published_file_are_refused(tmp_path, server, capsys):
    server.files["/eval/copa.jsonl"] = server.files["/eval/copa.jsonl"].replace(b"a", b"b", 1)
    assert main(_download("eval", tmp_path, server)) == 2
    error = capsys.readouterr().err
    digest = CATALOG["eval"].file("copa.jsonl").sha256
    assert "copa.jsonl" in error and f"not the published {digest}" in error
    assert "Traceback" not in error
    assert not (tmp_path / "eval" / "copa.jsonl").exists()
    assert not (tmp_path / "eval" / "copa.jsonl.part").exists()


def test_a_file_that_differs_needs_force(tmp_path, server, capsys):
    folder = tmp_path / "tinyshakespeare"
    folder.mkdir()
    (folder / "input.txt").write_text("not shakespeare")
    command = _download("tinyshakespeare", tmp_path, server)
    assert main(command) == 2
    assert "exists but is not the published input.txt" in capsys.readouterr().err
    assert main([*command, "--force"]) == 0
    assert sha256_of(folder / "input.txt") == CATALOG["tinyshakespeare"].files[0].sha256


def test_missing_files_and_names_are_clear_errors(tmp_path, server, capsys, caplog):
    del server.files["/tinyshakespeare/input.txt"]
    assert main(_download("tinyshakespeare", tmp_path, server)) == 2
    assert f"{server.url}/tinyshakespeare/input.txt answered HTTP 404" in capsys.readouterr().err
    assert main(["data", "download", "fashion_mnist"]) == 2
    assert "did you mean 'fashion-mnist'" in capsys.readouterr().err
    # a publisher's URL that fails falls back to the next one, aloud
    good = CATALOG["eval"].file("copa.jsonl")
    entry = DataFile(
        good.name, good.size, good.sha256, (f"{server.url}/gone", f"{server.url}/eval/copa.jsonl")
    )

    class Bar:
        def update(self, *args, **kwargs):
            pass

    with caplog.at_level(logging.WARNING):
        fetched = _fetch_file(entry, tmp_path / "copa.jsonl", entry.urls, False, Bar(), 0, 0, 5.0)
    assert fetched.outcome == "downloaded" and f"trying {server.url}/eval/copa.jsonl" in caplog.text


def test_data_list_and_missing_data_say_where_and_how(tmp_path, monkeypatch, capsys, data_root):
    monkeypatch.setenv("TESSERA_DATA_DIR", str(tmp_path / "empty"))
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert (
        f"data root: {tmp_path / 'empty'}" in out and "missing: tessera data download eval" in out
    )
    with pytest.raises(DataError) as caught:
        find_folder("tinyshakespeare")
    message = str(caught.value)
    assert message.count(str(tmp_path / "empty" / "tinyshakespeare")) == 1
    assert "tessera data download tinyshakespeare" in message and "TESSERA_DATA_DIR" in message
    recipe = RECIPES / "shakespeare-char.yaml"
    assert main(["train", str(recipe), f"run_dir={tmp_path}", "max_duration=1ba"]) == 2
    error = capsys.readouterr().err
    assert "tessera data download tinyshakespeare" in error and "Traceback" not in error
    monkeypatch.setenv("TESSERA_DATA_DIR", str(data_root / "fashion-mnist"))  # a common slip
    with pytest.raises(DataError, match="is the fashion-mnist folder itself; set it to the folder"):
        find_folder("fashion-mnist")
