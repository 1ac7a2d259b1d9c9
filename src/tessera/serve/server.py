"""Putting it together: engine + app + a bound socket + uvicorn.

The socket is bound before uvicorn starts, so a port in use is a clear `UserError` (exit 2)
instead of a log line from inside the server, and `--port 0` picks a free port that is then
printed. uvicorn's graceful shutdown (SIGINT/SIGTERM) stops accepting connections and waits
for the requests in flight, which the engine thread keeps serving until they end.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import sys
import threading
import time
from typing import Any

from tessera.core.errors import UserError
from tessera.serve.app import ServerState, build_app
from tessera.serve.chat_template import ChatTemplate
from tessera.serve.engine import Engine, EngineConfig
from tessera.serve.metrics import Metrics
from tessera.serve.worker import EngineWorker


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a `UserError` saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {host} is already in use (another server?); stop it or choose "
                "another --port."
            ) from None
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror}.") from None
    sock.listen(2048)
    return sock


def make_state(
    model: Any,
    template: ChatTemplate,
    model_name: str,
    config: EngineConfig,
    api_key: str | None = None,
    max_prompt_tokens: int | None = None,
    max_tokens: int | None = None,
) -> ServerState:
    metrics = Metrics()
    engine = Engine(model, model.tokenizer, config, metrics=metrics)
    return ServerState(
        worker=EngineWorker(engine),
        model_name=model_name,
        template=template,
        metrics=metrics,
        api_key=api_key,
        max_prompt_tokens=max_prompt_tokens,
        max_tokens=max_tokens,
        created=int(time.time()),
    )


class Server:
    """uvicorn serving one `ServerState` on a bound socket."""

    def __init__(
        self, state: ServerState, sock: socket.socket, graceful_seconds: float = 30.0
    ) -> None:
        try:
            import uvicorn
        except ImportError:
            raise UserError(
                "serving needs FastAPI and uvicorn: pip install 'tessera-train[serve]'"
            ) from None
        self.state = state
        self.sock = sock
        config = uvicorn.Config(
            build_app(state),
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=graceful_seconds,
        )
        self.uvicorn = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        # The engine thread takes and drops the GIL around every torch call; while the HTTP
        # thread is busy streaming, each retake can wait a whole switch interval (5 ms by
        # default). A shorter interval keeps decode steps from queueing behind it.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def run(self) -> None:
        """Serve until interrupted (SIGINT/SIGTERM finish the requests in flight first)."""
        # uvicorn re-raises the SIGINT it already shut down for; that is a normal end.
        with contextlib.suppress(KeyboardInterrupt):
            self.uvicorn.run(sockets=[self.sock])

    def start(self, timeout: float = 30.0) -> Server:
        """Serve on a background thread (tests, benchmarks); returns once it accepts requests."""
        self._thread = threading.Thread(target=self.run, name="tessera-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.uvicorn.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
