"""The engine on a background thread, and the bridge from its outputs to asyncio.

The HTTP server's event loop must never wait for the GPU, so the engine steps on its own
thread. `submit` (called on the event loop) queues a sequence and returns an asyncio queue
that receives its outputs; each engine step hands all of its outputs to the loop with a
single `call_soon_threadsafe`, so a step with 64 sequences wakes the loop once, not 64 times.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

import torch

from tessera.serve.engine import Engine, Output
from tessera.serve.sampling import Sampling

log = logging.getLogger("tessera.serve")


class EngineWorker:
    """Runs `engine.step()` on a thread while there is work."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        engine.deliver = self._deliver  # outputs go through the event loop
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        sys.setswitchinterval(self.engine.config.gil_switch_interval_ms / 1000)
        self._thread = threading.Thread(target=self._run, name="tessera-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish: sequences still running are ended with an error, then the thread exits."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(
        self,
        prompt: list[int],
        sampling: Sampling,
        choice: int,
        on_output: Callable[[Output], None],
    ) -> int:
        """Queue one sequence; `on_output` runs on the event loop for each of its outputs.
        Raises `QueueFull` or `UserError`."""
        sequence_id = self.engine.submit(prompt, sampling, on_output, choice)
        self._wake.set()
        return sequence_id

    def abort(self, sequence_id: int) -> None:
        self.engine.abort(sequence_id)
        self._wake.set()

    def _run(self) -> None:
        if self.engine.device.type == "cuda":
            torch.cuda.set_device(self.engine.device)  # the current device is per thread
        while not self._stop.is_set():
            if not self.engine.has_work():
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                self.engine.step()
            except Exception as error:  # keep serving; every affected request gets the error
                log.exception("engine step failed")
                self.engine.fail_all(f"the engine failed: {type(error).__name__}: {error}")
        self.engine.fail_all("the server is shutting down")

    def _deliver(self, events: list[tuple[Any, Output]]) -> None:
        if events and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(_dispatch, events)


def _dispatch(events: list[tuple[Any, Output]]) -> None:
    for sequence, output in events:
        sequence.on_output(output)
