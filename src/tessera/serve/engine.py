"""The serving engine: continuous batching over a slot KV cache.

Every `step()` admits waiting requests into free cache slots, feeds one chunk of pending
prompt tokens (several prompts batched, at most `prefill_chunk` tokens in all, so a long
prompt is spread over steps instead of stalling everyone), then decodes one token for every
sequence that has its prompt in the cache. Sequences join and leave at every step. The same
engine serves the HTTP server, `tessera generate`, the offline batch mode and `tessera chat`.

The engine itself is single-threaded: `submit` and `abort` may be called from any thread
(they only queue), `step` runs on one thread (see `worker.py` for the background loop).
Outputs go to each request's `on_output` callback from `deliver`, one batch per step.
"""

from __future__ import annotations

import collections
import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from tessera.core.errors import UserError
from tessera.serve.decode_step import DecodeStep
from tessera.serve.detokenize import TextStream
from tessera.serve.kv_cache import SlotKVCache, bytes_per_slot, slots_for_budget
from tessera.serve.requests import EngineConfig, Output, QueueFull, Sequence, TokenLogprob
from tessera.serve.sampling import Sampling, row_key, row_options, sample_rows, token_logprobs

__all__ = ["Engine", "EngineConfig", "Output", "QueueFull", "TokenLogprob"]

log = logging.getLogger("tessera.serve")

# cuDNN's attention re-plans for every new key length (see generate.py); keep to the others.
_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


@dataclass
class _Launched:
    """A decode step whose tokens are on their way to the host."""

    sequences: list[Sequence]
    slots: list[int]
    host: torch.Tensor
    event: Any
    logprobs: dict[int, Any]


class Engine:
    """Continuous batching of one GPT and its tokenizer."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: EngineConfig | None = None,
        metrics: Any = None,
    ) -> None:
        if tokenizer is None:
            raise UserError("the model has no tokenizer saved with it; serving needs one.")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config or EngineConfig()
        self.metrics = metrics
        self.device = model.embed.weight.device
        self.eos_id = getattr(tokenizer, "eos_id", None)
        self.vocab = model.config.vocab_size
        self.capacity = min(
            self.config.max_model_len or model.config.max_seq_len, model.config.max_seq_len
        )
        on_gpu = self.device.type == "cuda"
        self.prefill_chunk = self.config.prefill_chunk or (512 if on_gpu else 128)
        slots = self._plan_slots()
        mc = model.config
        dtype = model.embed.weight.dtype
        self.cache = SlotKVCache(
            mc.n_layer, slots, mc.kv_heads, mc.head_dim, self.capacity, self.device, dtype
        )
        self.decode = DecodeStep(model, self.cache, self.config.cuda_graphs)
        if on_gpu and not self.config.cuda_graphs:
            log.warning(
                "CUDA graphs are off: the decode step runs eagerly (slower at small batches)."
            )
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._incoming: collections.deque[Sequence] = collections.deque()
        self._aborts: set[int] = set()
        self.waiting: collections.deque[Sequence] = collections.deque()
        self.running: list[Sequence] = []
        self._free = list(range(slots))
        self.steps = 0
        self._inflight: _Launched | None = None
        self._flip = 0
        pinned = self.device.type == "cuda"
        self._host = [torch.zeros(slots, dtype=torch.long, pin_memory=pinned) for _ in range(2)]

    # -- sizing ----------------------------------------------------------------------------

    def _plan_slots(self) -> int:
        mc = self.model.config
        per_slot = bytes_per_slot(
            mc.n_layer, mc.kv_heads, mc.head_dim, self.capacity, self.model.embed.weight.dtype
        )
        if self.config.kv_memory_bytes is not None:
            budget = self.config.kv_memory_bytes
        elif self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            budget = int(free * self.config.kv_memory_fraction)
        else:
            budget = 4 * 2**30
        slots = slots_for_budget(self.config.max_batch, per_slot, budget)
        if slots < self.config.max_batch:
            log.warning(
                "the KV cache budget (%.1f GiB) holds %d sequences of %d tokens, not the %d "
                "asked for (--max-batch); more requests wait in the queue.",
                budget / 2**30,
                slots,
                self.capacity,
                self.config.max_batch,
            )
        self.kv_cache_bytes = slots * per_slot
        return slots

    @property
    def slots(self) -> int:
        return self.cache.slots

    # -- requests --------------------------------------------------------------------------

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

    def fail_all(self, reason: str) -> None:
        """End every queued and running sequence with an error (the step itself failed)."""
        events: list[tuple[Sequence, Output]] = []
        with self._lock:
            self.waiting.extend(self._incoming)
            self._incoming.clear()
        for sequence in [*self.waiting, *self.running]:
            self._finish(sequence, "error", events, error=reason)
            sequence.inflight = False
        self._inflight = None
        self.deliver(events)

    def has_work(self) -> bool:
        return bool(
            self.running or self.waiting or self._incoming or self._aborts or self._inflight
        )

    @property
    def queue_depth(self) -> int:
        return len(self.waiting) + len(self._incoming)

    # -- one step --------------------------------------------------------------------------

    @torch.no_grad()
    @sdpa_kernel(_BACKENDS)
    def step(self) -> None:
        """Admit, prefill one chunk, decode one token, deliver."""
        events: list[tuple[Sequence, Output]] = []
        self._take_incoming(events)
        self._admit()
        started = time.perf_counter()
        prefill = self._prefill_work()
        if prefill:
            self._run_prefill(prefill, events)
        decoding = [s for s in self.running if s.pending == 1 and not s.inflight]
        decoding += self._continuing()
        if decoding:
            self._run_decode(decoding, events)
        elif self._inflight is not None:
            self._resolve(events)
        if self.metrics is not None and (prefill or decoding):
            self.metrics.observe_step(
                time.perf_counter() - started, len(self.running), self.slots, self.queue_depth
            )
        self.steps += 1
        self.deliver(events)

    def warm_up(self) -> None:
        """On GPU, capture the decode graphs of every batch and key-length bucket now (a few
        seconds) instead of on first use; says how many and how long."""
        started = time.perf_counter()
        with sdpa_kernel(_BACKENDS):
            captured = self.decode.warm_up()
        if captured:
            log.info(
                "captured %d CUDA graphs of the decode step in %.1f s",
                captured,
                time.perf_counter() - started,
            )

    def run_until_done(self) -> None:
        """Step until every submitted sequence has finished (offline use)."""
        while self.has_work():
            self.step()

    def deliver(self, events: list[tuple[Any, Output]]) -> None:
        """Hand outputs to their callbacks (the server overrides this to change threads)."""
        for sequence, output in events:
            sequence.on_output(output)

    # -- scheduling ------------------------------------------------------------------------

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

    def _prefill_work(self) -> list[tuple[Sequence, int]]:
        work, budget = [], self.prefill_chunk
        for sequence in self.running:
            if sequence.pending > 1 and budget > 0:
                take = min(sequence.pending, budget)
                work.append((sequence, take))
                budget -= take
        return work

    def _run_prefill(self, work: list[tuple[Sequence, int]], events: list) -> None:
        longest = max(take for _, take in work)
        scratch = self.cache.scratch
        ids, positions, write_at, rows = [], [], [], []
        for sequence, take in work:
            start = sequence.window_start + sequence.cached
            chunk = sequence.tokens[start : start + take]
            pad = longest - take
            span = list(range(sequence.cached, sequence.cached + take))
            ids.append(chunk + [0] * pad)
            positions.append(span + [0] * pad)
            write_at.append(span + [scratch] * pad)
            rows.append(sequence.slot)
        key_length = max(s.cached + take for s, take in work)
        device = self.device
        step = self.cache.step(
            torch.tensor(rows, device=device),
            torch.tensor(write_at, device=device),
            key_length,
        )
        logits = self.model.run(
            torch.tensor(ids, device=device),
            cache=step,
            positions=torch.tensor(positions, device=device),
        )
        done_rows, done = [], []
        for row, (sequence, take) in enumerate(work):
            sequence.cached += take
            if sequence.pending == 0:
                done_rows.append((row, take - 1))
                done.append(sequence)
        if done:
            index = torch.tensor(done_rows, device=device)
            self._sample(done, logits[index[:, 0], index[:, 1]], events)

    def _continuing(self) -> list[Sequence]:
        """Sequences of the step in flight that will surely need another token: not at their
        last one, not about to slide their window (their token is not known on the host)."""
        if self._inflight is None:
            return []
        return [
            s
            for s in self._inflight.sequences
            if s.slot is not None
            and s.generated + 1 < s.sampling.max_new_tokens
            and len(s.tokens) + 1 - s.window_start <= self.capacity
        ]

    def _run_decode(self, decoding: list[Sequence], events: list) -> None:
        """Launch one decode step; then read back the step before it (overlap: the host
        handles those tokens while the GPU runs this step), or this one."""
        by_slot = {s.slot: s for s in decoding}
        rows = max(by_slot) + 1
        longest = max(s.cached + 1 for s in decoding)
        batch, key_length = self.decode.shape_for(rows, longest)
        ids, positions = [0] * batch, [0] * batch
        write_at, follow = [self.cache.scratch] * batch, [0] * batch
        for slot, sequence in by_slot.items():
            if sequence.inflight:
                follow[slot] = 1  # its token is the previous step's, still on the device
            else:
                ids[slot] = sequence.tokens[-1]
            positions[slot] = write_at[slot] = sequence.cached
        logits, _ = self.decode(ids, positions, write_at, follow, key_length)
        sampled = [s for s in decoding if s.sampling.temperature > 0]
        if sampled:  # overwrite the argmax of sampling rows with their draw
            slots = torch.tensor([s.slot for s in sampled], device=self.device)
            keys = [row_key(s.seed, s.choice, s.generated + s.inflight) for s in sampled]
            options = row_options(
                list(zip([s.sampling for s in sampled], keys)), self.vocab, self.device
            )
            chosen = sample_rows(logits.index_select(0, slots), options)
            self.decode.last.index_copy_(0, slots, chosen)
        logprobs = {}
        wanted = [s for s in decoding if s.sampling.logprobs is not None]
        if wanted:  # needs the logits on the host now: this step does not overlap
            slots = torch.tensor([s.slot for s in wanted], device=self.device)
            rows_logprobs = token_logprobs(
                logits.index_select(0, slots),
                self.decode.last.index_select(0, slots),
                [s.sampling.logprobs for s in wanted],
            )
            logprobs = {id(s): lp for s, lp in zip(wanted, rows_logprobs)}
        self._flip ^= 1  # two host buffers: the one of the step in flight is still unread
        host = self._host[self._flip]
        host[:batch].copy_(self.decode.last[:batch], non_blocking=True)
        event = None
        if self.device.type == "cuda":
            event = torch.cuda.Event()
            event.record()
        launched = _Launched(decoding, [s.slot for s in decoding], host, event, logprobs)
        previous, self._inflight = self._inflight, launched
        for sequence in decoding:
            sequence.cached += 1
        if previous is not None:
            self._read(previous, events, skip=launched)
        for sequence in decoding:
            sequence.inflight = True
        if not self.config.overlap or wanted:
            self._resolve(events)

    def _resolve(self, events: list) -> None:
        """Read back the step in flight."""
        launched, self._inflight = self._inflight, None
        if launched is not None:
            self._read(launched, events)

    def _read(self, launched: _Launched, events: list, skip: _Launched | None = None) -> None:
        if launched.event is not None:
            launched.event.synchronize()  # this step only: a later one may still run
        tokens = launched.host.tolist()
        now = time.monotonic()
        continuing = {id(s) for s in skip.sequences} if skip is not None else set()
        for sequence, slot in zip(launched.sequences, launched.slots):
            if id(sequence) not in continuing:
                sequence.inflight = False
            if sequence.slot != slot:
                continue  # finished (stop, abort, timeout) while its step ran: a wasted row
            logprob = launched.logprobs.get(id(sequence))
            self._append(sequence, tokens[slot], logprob, now, events)

    # -- tokens out ------------------------------------------------------------------------

    def _sample(self, sequences: list[Sequence], logits: torch.Tensor, events: list) -> None:
        if all(s.sampling.temperature == 0 for s in sequences):
            chosen = logits.argmax(dim=-1)  # greedy batch: no options or noise to build
        else:
            rows = [(s.sampling, row_key(s.seed, s.choice, s.generated)) for s in sequences]
            chosen = sample_rows(logits, row_options(rows, self.vocab, logits.device))
        want_logprobs = [s.sampling.logprobs is not None for s in sequences]
        logprob_rows: list[TokenLogprob | None] = [None] * len(sequences)
        if any(want_logprobs):
            counts = [s.sampling.logprobs if w else None for s, w in zip(sequences, want_logprobs)]
            logprob_rows = token_logprobs(logits, chosen, counts)
        now = time.monotonic()
        for sequence, token, logprob in zip(sequences, chosen.tolist(), logprob_rows):
            self._append(sequence, token, logprob, now, events)

    def _append(self, sequence, token: int, logprob, now: float, events: list) -> None:
        if sequence.first_token is None:
            sequence.first_token = now
            if self.metrics is not None:
                self.metrics.observe_first_token(now - sequence.arrival)
        if token == self.eos_id and not sequence.sampling.ignore_eos:
            self._finish(sequence, "stop", events)
            return
        sequence.generated += 1
        sequence.tokens.append(token)
        text = sequence.text.push(token)
        logprobs = [logprob] if logprob is not None else []
        if sequence.text.stopped:
            self._finish(sequence, "stop", events, text, [token], logprobs)
            return
        if sequence.generated >= sequence.sampling.max_new_tokens:
            self._finish(sequence, "length", events, text, [token], logprobs)
            return
        if len(sequence.tokens) - sequence.window_start > self.capacity:
            if not sequence.slide:
                self._finish(sequence, "length", events, text, [token], logprobs)
                return
            # Past the context: recompute over the last `capacity` tokens for each new token.
            sequence.window_start = len(sequence.tokens) - self.capacity
            sequence.cached = 0
        events.append((sequence, self._output(sequence, text, [token], logprobs, None)))

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
