"""`tessera dashboard`: a local, read-only web page of the run registry.

A standard-library HTTP server (bound to 127.0.0.1 unless told otherwise, optionally behind a
token) serves one self-contained page (`dashboard.html`: no CDN, no network; its script draws
SVG charts itself) and a small JSON API the page polls:

    GET /api/runs                          every run: status, attempts, step, last loss
    GET /api/runs/ID                       one run with its attempts
    GET /api/runs/ID/metrics?offset=N      metrics.jsonl records from byte N, and the next N

Only GET is served; nothing the page can ask for changes a run.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from tessera.launch import control
from tessera.launch.registry import Registry, Run

MAX_METRICS_BYTES = 4 << 20  # per answer; the page asks again from the returned offset
REFRESH_SECONDS = 10.0  # how often a live cluster run is asked about (squeue, kubectl)


def run_summary(run: Run) -> dict[str, Any]:
    loss = next(
        (run.last_metrics[key] for key in ("loss/train", "metrics/eval/loss")
         if isinstance(run.last_metrics.get(key), (int, float))),
        None,
    )  # fmt: skip
    return {
        "id": run.id,
        "name": run.name,
        "status": control.shown_status(run),
        "reason": run.reason,
        "backend": run.backend,
        "job_id": run.job_id,
        "attempts": [asdict(attempt) for attempt in run.attempts],
        "step": control.last_step(run),
        "loss": loss,
        "created": run.created,
        "updated": run.updated,
        "run_folder": run.run_folder,
        "problem": control.folder_problem(run),
        "processes": _processes(run),
        "live": run.live,
    }


def _processes(run: Run) -> int:
    cluster = run.launch.get("cluster")
    if cluster:
        per_node = cluster.get("nproc_per_node") or max(cluster.get("gpus_per_node") or 0, 1)
        return int(cluster.get("nodes") or 1) * int(per_node)
    return int(run.launch.get("nproc", 1))


def read_metrics(folder: Path, offset: int) -> dict[str, Any]:
    """Whole lines of metrics.jsonl from byte `offset`; non-JSON lines are skipped."""
    path = folder / "metrics.jsonl"
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            data = file.read(MAX_METRICS_BYTES)
    except OSError:
        return {"records": [], "offset": offset, "missing": not path.exists()}
    end = data.rfind(b"\n") + 1  # a torn last line waits for the next call
    records = []
    for line in data[:end].splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return {"records": records, "offset": offset + end, "missing": False}


class Dashboard:
    """The registry as JSON, refreshing live cluster runs now and then."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._refreshed: dict[str, float] = {}
        self._lock = threading.Lock()

    def runs(self) -> list[Run]:
        runs = self.registry.runs()
        now = time.monotonic()
        with self._lock:
            for index, run in enumerate(runs):
                due = now - self._refreshed.get(run.id, 0.0) > REFRESH_SECONDS
                if run.live and run.backend != "local" and due:
                    self._refreshed[run.id] = now
                    runs[index] = control.refresh(self.registry, run)
        return runs

    def run(self, run_id: str) -> Run | None:
        return next((run for run in self.runs() if run.id == run_id), None)


def _handler(dashboard: Dashboard, token: str | None, page: bytes) -> type:
    class Handler(BaseHTTPRequestHandler):
        server_version = "tessera-dashboard"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: no access log
            pass

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if token is not None and not self._authorised(url):
                self._send(HTTPStatus.UNAUTHORIZED, b"token required: open /?token=TOKEN\n")
                return
            parts = [part for part in url.path.split("/") if part]
            if not parts:
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            elif parts == ["api", "runs"]:
                self._json([run_summary(run) for run in dashboard.runs()])
            elif len(parts) in (3, 4) and parts[:2] == ["api", "runs"]:
                run = dashboard.run(parts[2])
                if run is None:
                    self._send(HTTPStatus.NOT_FOUND, b"no such run\n")
                elif len(parts) == 3:
                    self._json(run_summary(run))
                elif parts[3] == "metrics":
                    offset = int(parse_qs(url.query).get("offset", ["0"])[0] or 0)
                    self._json(read_metrics(run.folder, max(offset, 0)))
                else:
                    self._send(HTTPStatus.NOT_FOUND, b"not found\n")
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n")

        def _authorised(self, url: Any) -> bool:
            given = parse_qs(url.query).get("token", [""])[0]
            header = self.headers.get("Authorization", "")
            if header.startswith("Bearer "):
                given = header[len("Bearer ") :]
            return hmac.compare_digest(given.encode(), str(token).encode())

        def _json(self, value: Any) -> None:
            self._send(HTTPStatus.OK, json.dumps(value, default=str).encode(), "application/json")

        def _send(self, status: HTTPStatus, body: bytes, kind: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _refuse(self) -> None:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"the dashboard is read-only\n")

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    return Handler


def make_server(
    registry: Registry, host: str = "127.0.0.1", port: int = 8050, token: str | None = None
) -> ThreadingHTTPServer:
    page = resources.files("tessera.launch").joinpath("dashboard.html").read_bytes()
    server = ThreadingHTTPServer((host, port), _handler(Dashboard(registry), token, page))
    server.daemon_threads = True
    return server
