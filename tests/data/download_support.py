"""A file server on loopback for the download tests (with range requests, cut connections and
a server that ignores ranges), and the publishers' exact bytes rebuilt from the local copies."""

from __future__ import annotations

import re
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tessera.data.catalog import CATALOG
from tessera.data.download import sha256_of

# Debian's dataset-fashion-mnist recompressed the four files without the gzip header's file
# name and time stamp; the deflate streams are the publisher's. These are the original headers'
# time stamps (the MD5 sums in zalandoresearch/fashion-mnist's README confirm the result).
FASHION_MTIME = {"train": 0x59A7E9DE, "t10k": 0x59A7E9F3}


def published_bytes(root: Path, set_name: str, file_name: str) -> bytes:
    """The file exactly as its publisher serves it, from the copy in the data root."""
    local = root / set_name / file_name
    entry = CATALOG[set_name].file(file_name)
    data = local.read_bytes()
    if sha256_of(local) == entry.sha256 or set_name != "fashion-mnist":
        return data
    if data[3] & 0x08:  # a name field that is not the publisher's: keep the bytes as they are
        return data
    stem = file_name.removesuffix(".gz")
    mtime = FASHION_MTIME[stem.split("-")[0]]
    header = b"\x1f\x8b\x08\x08" + struct.pack("<I", mtime) + data[8:10] + stem.encode() + b"\0"
    return header + data[10:]


class FileServer:
    """Serves `files` ({url path: bytes}) on 127.0.0.1. `cut_after` bytes, `cuts` times: the
    next file responses stop there; `ignore_ranges`: always answer 200 with the whole file."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cuts = 0
        self.cut_after = 0
        self.ignore_ranges = False
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_GET(self):
                server._answer(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def file_requests(self, name: str) -> list[str | None]:
        return [r for path, r in self.requests if path.endswith("/" + name)]

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        wanted = handler.headers.get("Range")
        with self.lock:
            self.requests.append((handler.path, wanted))
            cut = self.cuts > 0
            self.cuts -= cut
        data = self.files.get(handler.path)
        if data is None:
            handler.send_error(404, "Not Found")
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", wanted or "")
        if match and not self.ignore_ranges:
            start = int(match.group(1))
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            handler.send_response(200)
        body = data[start:]
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body[: self.cut_after] if cut else body)
        if cut:
            handler.close_connection = True

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
