"""Shared pieces of the streaming tests: real data, an S3 server on loopback, a faulty proxy."""

from __future__ import annotations

import contextlib
import re
import socket
import threading

import numpy as np
import pytest

from tessera.data.root import data_root, find_file, find_folder

SHARED = data_root()
FASHION = find_folder("fashion-mnist")
SHAKESPEARE = find_file("tinyshakespeare")


def fashion_samples(count: int, split: str = "t10k") -> list[dict]:
    """The first `count` Fashion-MNIST samples: raw 28x28 bytes, label, and the index."""
    from tessera.data.fashion_mnist import read_idx

    images = read_idx(FASHION / f"{split}-images-idx3-ubyte.gz")[:count]
    labels = read_idx(FASHION / f"{split}-labels-idx1-ubyte.gz")[:count]
    return [{"image": images[i].tobytes(), "label": int(labels[i]), "id": i} for i in range(count)]


def dropout_classifier(p: float):
    """A linear Fashion-MNIST classifier behind dropout `p`: its weights after training show
    whether every random draw (dropout's) repeated exactly."""
    import torch.nn.functional as F
    from torch import nn

    from tessera.core.model import TrainableModel

    class DropoutClassifier(TrainableModel):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Dropout(p), nn.Linear(784, 10))

        def forward(self, batch):
            return self.net(batch["image"].flatten(1).float() / 255.0)

        def loss(self, outputs, batch):
            return F.cross_entropy(outputs, batch["label"])

        def update_metric(self, batch, outputs, metric) -> None:
            metric.update(outputs, batch["label"])

        def metrics(self, train: bool = False):
            return {}

    return DropoutClassifier()


def shakespeare_tokens(length: int = 64) -> list[np.ndarray]:
    """Tiny Shakespeare as byte tokens, cut into sequences of `length`."""
    data = np.frombuffer(SHAKESPEARE.read_bytes(), dtype=np.uint8).astype(np.uint16)
    usable = len(data) // length * length
    return list(data[:usable].reshape(-1, length))


class FaultyProxy:
    """A TCP proxy on loopback in front of the S3 server. It records each request line and can
    cut the connection after `cut_after` bytes of the response to the next `cuts` shard GETs."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.requests: list[tuple[str, str]] = []
        self.cuts = 0
        self.cut_after = 2000
        self.cut_done = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def shard_gets(self) -> list[str]:
        return [path for method, path in self.requests if method == "GET" and "shard" in path]

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            state = {"cut": False, "sent": 0}
            for pump, args in (
                (self._requests, (client, upstream, state)),
                (self._responses, (upstream, client, state)),
            ):
                threading.Thread(target=pump, args=args, daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, state: dict) -> None:
        try:
            while data := client.recv(65536):
                for method, path in re.findall(rb"(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP/1", data):
                    with self.lock:
                        self.requests.append((method.decode(), path.decode()))
                        if method == b"GET" and b"shard" in path and self.cuts > 0:
                            self.cuts -= 1
                            state["cut"], state["sent"] = True, 0
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def _responses(self, upstream: socket.socket, client: socket.socket, state: dict) -> None:
        try:
            while data := upstream.recv(65536):
                if state["cut"]:
                    room = self.cut_after - state["sent"]
                    if len(data) >= room:
                        client.sendall(data[:room])
                        with self.lock:
                            self.cut_done += 1
                        break
                    state["sent"] += len(data)
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def close(self) -> None:
        self.listener.close()


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


@pytest.fixture(scope="module")
def s3_server():
    """A real S3-compatible server (moto) on 127.0.0.1, behind a fault-injecting proxy."""
    pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    proxy = FaultyProxy(server.get_host_and_port())
    yield proxy
    proxy.close()
    server.stop()


def s3_options(endpoint: str, key: str = "testing") -> dict:
    return {
        "key": key,
        "secret": "testing",
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Keep default cache folders inside the test's temporary folder."""
    monkeypatch.setenv("TESSERA_CACHE", str(tmp_path / "home-cache"))
