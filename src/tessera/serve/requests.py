"""What the engine is asked and what it answers: its config, its sequences, their outputs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tessera.serve.detokenize import TextStream
from tessera.serve.sampling import Sampling


class QueueFull(Exception):
    """The waiting queue holds `max_queue` requests already."""


@dataclass
class EngineConfig:
    """How many sequences run at once and how the work of a step is bounded."""

    max_batch: int = 64  # slots: sequences decoded together
    max_queue: int = 256  # requests waiting for a slot before new ones are refused
    max_model_len: int | None = None  # tokens per sequence; None = the model's max_seq_len
    prefill_chunk: int | None = None  # prompt tokens fed per step; None = 512 on GPU, 128 on CPU
    kv_memory_fraction: float = 0.85  # of free GPU memory the cache may take
    kv_memory_bytes: int | None = None  # explicit cache budget (CPU default: 4 GiB)
    cuda_graphs: bool = True
    overlap: bool = True  # start a decode step before the host has read the previous one
    request_timeout: float | None = None  # seconds from submit to finish; None = no limit
    # How long a busy thread keeps the GIL while another waits for it (Python's default is 5
    # ms): the HTTP thread must not hold the engine's step back by a whole decode step or more.
    gil_switch_interval_ms: float = 0.5


@dataclass
class TokenLogprob:
    token: int
    logprob: float
    top: list[tuple[int, float]]


@dataclass
class Output:
    """What one step added to one sequence."""

    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob]
    finish_reason: str | None  # None while running; stop, length, abort, timeout or error
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None


@dataclass
class Sequence:
    """One generated sequence (one choice of one request) and where it stands."""

    id: int
    prompt: list[int]
    sampling: Sampling
    on_output: Callable[[Output], None]
    choice: int
    seed: int
    slide: bool
    deadline: float | None
    text: TextStream
    tokens: list[int] = field(default_factory=list)  # prompt + generated
    window_start: int = 0  # index in `tokens` of the token in cache column 0
    cached: int = 0  # tokens of the window whose keys/values are in the slot
    slot: int | None = None
    generated: int = 0
    arrival: float = field(default_factory=time.monotonic)
    first_token: float | None = None
    inflight: bool = False  # a token of a launched decode step is not read back yet

    @property
    def pending(self) -> int:
        return len(self.tokens) - self.window_start - self.cached
