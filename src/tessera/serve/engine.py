"""The serving engine: continuous batching over a slot KV cache.

Every `step()` admits waiting requests into free cache slots, feeds one chunk of pending
prompt tokens (several prompts batched, at most `prefill_chunk` tokens in all, so a long
prompt is spread over steps instead of stalling everyone), then decodes one token for every
sequence that has its prompt in the cache. Sequences join and leave at every step. A decode
step is launched before the previous one's tokens are read back (they feed it on the device),
so the host's per-token work overlaps the GPU's. The same engine serves the HTTP server,
`tessera generate`, the offline batch mode and `tessera chat`.

The engine itself is single-threaded: `submit` and `abort` may be called from any thread
(they only queue), `step` runs on one thread (see `worker.py` for the background loop).
Outputs go to each request's `on_output` callback from `deliver`, one batch per step.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from tessera.core.errors import UserError
from tessera.serve.decode_step import DecodeStep
from tessera.serve.kv_cache import plan_cache, prefill_inputs
from tessera.serve.requests import EngineConfig, Output, QueueFull, Sequence, TokenLogprob
from tessera.serve.sampling import row_key, row_options, sample_rows, token_logprobs
from tessera.serve.scheduler import Scheduler

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


class Engine(Scheduler):
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
        config = config or EngineConfig()
        capacity = min(config.max_model_len or model.config.max_seq_len, model.config.max_seq_len)
        self.model = model.eval()
        self.device = model.embed.weight.device
        self.eos_id = getattr(tokenizer, "eos_id", None)
        on_gpu = self.device.type == "cuda"
        self.prefill_chunk = config.prefill_chunk or (512 if on_gpu else 128)
        self.cache = plan_cache(model, capacity, config)
        slots = self.cache.slots
        super().__init__(tokenizer, model.config.vocab_size, capacity, slots, config, metrics)
        self.decode = DecodeStep(model, self.cache, self.config.cuda_graphs)
        if on_gpu and not self.config.cuda_graphs:
            log.warning(
                "CUDA graphs are off: the decode step runs eagerly (slower at small batches)."
            )
        self.steps = 0
        self._inflight: _Launched | None = None
        self._flip = 0
        pinned = self.device.type == "cuda"
        self._host = [torch.zeros(slots, dtype=torch.long, pin_memory=pinned) for _ in range(2)]
        self._events = [torch.cuda.Event() if pinned else None for _ in range(2)]

    @property
    def slots(self) -> int:
        return self.cache.slots

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

    def _prefill_work(self) -> list[tuple[Sequence, int]]:
        work, budget = [], self.prefill_chunk
        for sequence in self.running:
            if sequence.pending > 1 and budget > 0:
                take = min(sequence.pending, budget)
                work.append((sequence, take))
                budget -= take
        return work

    def _run_prefill(self, work: list[tuple[Sequence, int]], events: list) -> None:
        chunks = []
        for sequence, take in work:
            start = sequence.window_start + sequence.cached
            chunks.append((sequence.slot, sequence.cached, sequence.tokens[start : start + take]))
        ids, positions, step = prefill_inputs(self.cache, chunks, self.device)
        logits = self.model.run(ids, cache=step, positions=positions)
        device = self.device
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
        event = self._events[self._flip]
        if event is not None:
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
