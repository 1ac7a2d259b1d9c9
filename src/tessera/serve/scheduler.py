"""Requests in, slots out: the engine's queue, admission, aborts, timeouts and finishing.

`Scheduler` owns who waits and who runs: `submit` and `abort` may be called from any thread
(they only queue, under a lock); everything else runs on the engine's thread at the start of
a step. A sequence holds one KV-cache slot from admission until it finishes.
"""

from __future__ import annotations

import collections
import itertools
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from tessera.core.errors import UserError
from tessera.serve.detokenize import TextStream
from tessera.serve.requests import EngineConfig, Output, QueueFull, Sequence
from tessera.serve.sampling import Sampling


class Scheduler:
    """Waiting and running sequences of one engine with `slots` cache slots."""

    def __init__(
        self,
        tokenizer: Any,
        vocab: int,
        capacity: int,
        slots: int,
        config: EngineConfig,
        metrics: Any,
    ) -> None:
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.capacity = capacity
        self.config = config
        self.metrics = metrics
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._incoming: collections.deque[Sequence] = collections.deque()
        self._aborts: set[int] = set()
        self.waiting: collections.deque[Sequence] = collections.deque()
        self.running: list[Sequence] = []
        self._free = list(range(slots))

    # -- requests (any thread) ------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of a prompt, refusing ids the model does not have."""
        ids = self.tokenizer.encode(text)
        if ids and max(ids) >= self.vocab:
            raise UserError(
                f"the tokenizer gives id {max(ids)}, outside the model's vocabulary of "
                f"{self.vocab}: tokenizer and model do not belong together."
            )
        return ids

    def check_request(self, prompt: list[int], sampling: Sampling, slide: bool = False) -> None:
        """Raise a `UserError` naming what does not fit (empty or over-long prompt, ...)."""
        sampling.check()
        if sampling.max_new_tokens < 1:
            raise UserError(f"max_tokens: must be at least 1, got {sampling.max_new_tokens}.")
        if not prompt:
            raise UserError("prompt: empty; it needs at least one token.")
        if len(prompt) > self.capacity or (not slide and len(prompt) >= self.capacity):
            raise UserError(
                f"prompt: {len(prompt)} tokens, but this model's context holds {self.capacity} "
                f"tokens; shorten the prompt to at most {self.capacity - 1} tokens."
            )
        if not slide and len(prompt) + sampling.max_new_tokens > self.capacity:
            raise UserError(
                f"max_tokens: {sampling.max_new_tokens} new tokens after a prompt of "
                f"{len(prompt)} exceed the model's context of {self.capacity} tokens; ask for "
                f"at most {self.capacity - len(prompt)}."
            )

    def submit(
        self,
        prompt: list[int],
        sampling: Sampling,
        on_output: Callable[[Output], None],
        choice: int = 0,
        slide: bool = False,
    ) -> int:
        """Queue one sequence; returns its id. `slide` lets it run past the context over a
        sliding window (offline generation). Raises `QueueFull` or `UserError`."""
        self.check_request(prompt, sampling, slide)
        seed = sampling.seed if sampling.seed is not None else secrets.randbits(63)
        timeout = self.config.request_timeout
        sequence = Sequence(
            id=next(self._ids),
            prompt=list(prompt),
            sampling=sampling,
            on_output=on_output,
            choice=choice,
            seed=seed,
            slide=slide,
            deadline=time.monotonic() + timeout if timeout else None,
            text=TextStream(self.tokenizer, sampling.stop),
            tokens=list(prompt),
        )
        with self._lock:
            if len(self._incoming) + len(self.waiting) >= self.config.max_queue:
                raise QueueFull(f"{self.config.max_queue} requests are already waiting")
            self._incoming.append(sequence)
        return sequence.id

    def abort(self, sequence_id: int) -> None:
        """Stop a sequence (a client went away): its slot is freed at the next step."""
        with self._lock:
            self._aborts.add(sequence_id)

    @property
    def queue_depth(self) -> int:
        return len(self.waiting) + len(self._incoming)

    # -- at the start of a step (the engine thread) ---------------------------------------

    def _take_incoming(self, events: list[tuple[Sequence, Output]]) -> None:
        with self._lock:
            self.waiting.extend(self._incoming)
            self._incoming.clear()
            aborts, self._aborts = self._aborts, set()
        now = time.monotonic()
        for sequence in [*self.waiting, *self.running]:
            if sequence.id in aborts:
                self._finish(sequence, "abort", events)
            elif sequence.deadline is not None and now > sequence.deadline:
                self._finish(sequence, "timeout", events, error="the request timed out")

    def _admit(self) -> None:
        while self.waiting and self._free:
            sequence = self.waiting.popleft()
            self._free.sort()
            sequence.slot = self._free.pop(0)  # lowest first: decode batches stay compact
            self.running.append(sequence)

    def _finish(
        self,
        sequence,
        reason: str,
        events: list,
        text: str = "",
        tokens=(),
        logprobs=(),
        error=None,
    ) -> None:
        if reason in ("stop", "length"):
            text += sequence.text.finish()
        if sequence in self.running:
            self.running.remove(sequence)
            self._free.append(sequence.slot)
            sequence.slot = None
        elif sequence in self.waiting:
            self.waiting.remove(sequence)
        output = self._output(sequence, text, list(tokens), list(logprobs), reason)
        output.error = error
        events.append((sequence, output))
        if self.metrics is not None:
            self.metrics.observe_finish(
                reason,
                len(sequence.prompt),
                sequence.generated,
                time.monotonic() - sequence.arrival,
            )

    def _output(self, sequence, text, tokens, logprobs, reason) -> Output:
        return Output(
            text=text,
            token_ids=tokens,
            logprobs=logprobs,
            finish_reason=reason,
            prompt_tokens=len(sequence.prompt),
            completion_tokens=sequence.generated,
        )
