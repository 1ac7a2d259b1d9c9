"""Choosing the next token: greedy, temperature, top-k, top-p, with reproducible seeds.

`Sampling` holds one request's options. `filter_logits` (top-k and top-p) is shared by both
decoders. `choose_next` draws with a `torch.Generator` (the reference decoder in
`generate.py`); `sample_rows` draws a whole batch whose rows each have their own options (the
serving engine), with counter-based noise: the random numbers of a row depend only on its seed,
its choice index and how many tokens it has generated, never on which other requests share the
batch, so a seeded request gives the same text alone or under load.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch

from tessera.core.errors import UserError


@dataclass
class Sampling:
    """How each next token is chosen. temperature 0 means greedy (argmax)."""

    max_new_tokens: int = 200
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    logprobs: int | None = None  # alternatives to report per token (None: no log-probabilities)
    ignore_eos: bool = False  # keep going past end-of-text (benchmarks)

    def check(self) -> None:
        if self.max_new_tokens < 0:
            raise UserError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}.")
        if self.temperature < 0:
            raise UserError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}.")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"top_k must be >= 1, got {self.top_k}.")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise UserError(f"top_p must be in (0, 1], got {self.top_p}.")


def filter_logits(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """`logits` [B, V] with tokens outside each row's top-k and top-p set to -inf.

    `top_k` [B] (long, >= V for off) and `top_p` [B] (float, 1 for off). Top-p keeps the
    smallest set of most likely tokens whose mass reaches p (always at least the best one).
    """
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    ranks = torch.arange(logits.shape[-1], device=logits.device).unsqueeze(0)
    drop = ranks >= top_k.unsqueeze(1)
    probs = sorted_logits.softmax(-1)
    mass_before = probs.cumsum(-1) - probs
    drop = drop | (mass_before >= top_p.unsqueeze(1))
    drop_original = torch.zeros_like(drop).scatter(-1, order, drop)
    return logits.masked_fill(drop_original, float("-inf"))


def choose_next(
    logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None
) -> torch.Tensor:
    """Next token ids [B] from last-position logits [B, V], all rows with the same options."""
    if sampling.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / sampling.temperature
    batch, vocab = logits.shape
    if sampling.top_k is not None or sampling.top_p is not None:
        top_k = torch.full((batch,), sampling.top_k or vocab, device=logits.device)
        top_p = torch.full((batch,), sampling.top_p or 1.0, device=logits.device)
        logits = filter_logits(logits, top_k, top_p)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# -- the engine's batched sampler --------------------------------------------------------------

_M32 = 0xFFFFFFFF


def row_key(seed: int, choice: int, step: int) -> int:
    """A 32-bit key for the noise of one row at one step (any size of seed)."""
    digest = hashlib.blake2b(f"{seed}:{choice}:{step}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijective integer mix of values in [0, 2**32) held in int64 (no overflow: each
    product stays below 2**63)."""
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    return (x >> 16) ^ x


def gumbel_noise(keys: torch.Tensor, vocab: int) -> torch.Tensor:
    """Gumbel(0, 1) noise [B, vocab], a pure function of each row's key."""
    columns = torch.arange(vocab, device=keys.device, dtype=torch.int64)
    bits = _mix32(_mix32(keys.unsqueeze(1) ^ columns.unsqueeze(0)) ^ (keys.unsqueeze(1) >> 7))
    uniform = ((bits >> 8).float() + 0.5) / float(1 << 24)  # strictly inside (0, 1)
    return -torch.log(-torch.log(uniform))


@dataclass
class RowOptions:
    """Per-row sampling options of one batch, as tensors on the logits' device."""

    temperature: torch.Tensor  # [B] float, 0 = greedy
    top_k: torch.Tensor  # [B] long, vocab = off
    top_p: torch.Tensor  # [B] float, 1 = off
    keys: torch.Tensor  # [B] int64 noise keys (see row_key)
    all_greedy: bool
    any_filter: bool


def row_options(rows: list[tuple[Sampling, int]], vocab: int, device: torch.device) -> RowOptions:
    """Options for rows given as (sampling, noise key)."""
    temperature = [s.temperature for s, _ in rows]
    top_k = [min(s.top_k or vocab, vocab) for s, _ in rows]
    top_p = [s.top_p if s.top_p is not None else 1.0 for s, _ in rows]
    return RowOptions(
        temperature=torch.tensor(temperature, device=device, dtype=torch.float32),
        top_k=torch.tensor(top_k, device=device, dtype=torch.int64),
        top_p=torch.tensor(top_p, device=device, dtype=torch.float32),
        keys=torch.tensor([key for _, key in rows], device=device, dtype=torch.int64),
        all_greedy=all(t == 0 for t in temperature),
        any_filter=any(k < vocab for k in top_k) or any(p < 1.0 for p in top_p),
    )


def sample_rows(logits: torch.Tensor, options: RowOptions) -> torch.Tensor:
    """Next token ids [B] from logits [B, V]: argmax for greedy rows, otherwise a draw from
    softmax(filtered logits / temperature) by the Gumbel-max trick."""
    greedy = logits.argmax(dim=-1)
    if options.all_greedy:
        return greedy
    scaled = logits.float() / options.temperature.clamp(min=1e-6).unsqueeze(1)
    if options.any_filter:
        scaled = filter_logits(scaled, options.top_k, options.top_p)
    drawn = (scaled + gumbel_noise(options.keys, logits.shape[-1])).argmax(dim=-1)
    return torch.where(options.temperature == 0, greedy, drawn)


def token_logprobs(
    logits: torch.Tensor, chosen: torch.Tensor, alternatives: list[int | None]
) -> list[Any]:
    """Per row: None where `alternatives` is None, else a `TokenLogprob` with the chosen
    token's log-probability under the model (before temperature and filtering) and the
    `alternatives` most likely tokens."""
    from tessera.serve.requests import TokenLogprob

    logp = torch.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(1, chosen.unsqueeze(1)).squeeze(1).tolist()
    most = max(k or 0 for k in alternatives)
    top_values, top_ids = (t.tolist() for t in logp.topk(max(most, 1), dim=-1))
    out: list[Any] = []
    for row, k in enumerate(alternatives):
        if k is None:
            out.append(None)
            continue
        top = list(zip(top_ids[row][:k], top_values[row][:k]))
        out.append(TokenLogprob(int(chosen[row]), picked[row], top))
    return out
