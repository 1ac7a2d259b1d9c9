"""Scoring: log-likelihoods of continuations, and greedy generation, in length-sorted batches.

Conventions are lm-evaluation-harness's, so numbers agree with it: whitespace at the end of a
context moves to the start of its continuation; the continuation's tokens are those of
`encode(context + continuation)` after `len(encode(context))`; a pair longer than the model's
window keeps its last `max_length + 1` tokens (the context is cut from the left, and counted).

Speed: pairs are sorted by length (longest first, so an out-of-memory shows at once) and padded
at the right, which needs no attention mask (flash attention runs); the output layer runs only
at continuation positions; sums, greedy checks and counts stay on the device until the end, so
the loop never waits for the GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tessera.core.errors import DataError
from tessera.eval.models import EvalModel

Progress = Callable[[float], None]


@dataclass
class Scores:
    """Per pair: summed log-likelihood, whether greedy decoding reproduces it, token count."""

    loglikelihood: np.ndarray
    greedy: np.ndarray
    tokens: np.ndarray
    truncated: np.ndarray  # whether the pair's context was cut from the left to fit


def encode_pairs(
    model: EvalModel, pairs: Sequence[tuple[str, str]]
) -> list[tuple[list[int], list[int]]]:
    """Token ids (context, continuation) of each text pair."""
    moved = []
    for context, continuation in pairs:
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        moved.append((context, continuation))
    contexts = sorted({context for context, _ in moved if context})
    context_ids = dict(zip(contexts, model.encode_batch(contexts))) if contexts else {}
    wholes = model.encode_batch([context + continuation for context, continuation in moved])
    encoded = []
    for (context, continuation), whole in zip(moved, wholes):
        if not context:
            ids = model.encode(continuation)
            if model.prefix_id is None or (ids and ids[0] == model.prefix_id):
                encoded.append((ids[:1], ids[1:]))
            else:
                encoded.append(([model.prefix_id], ids))
            continue
        head = context_ids[context]
        encoded.append((head, whole[len(head) :]))
    for (context, continuation), (_, ids) in zip(moved, encoded):
        if not ids:
            raise DataError(
                f"continuation {continuation!r} (after {context[-40:]!r}) encodes to no tokens; "
                "nothing would be scored."
            )
    return encoded


def score_pairs(
    model: EvalModel,
    encoded: Sequence[tuple[list[int], list[int]]],
    batch_size: int,
    progress: Progress | None = None,
) -> Scores:
    """Score every (context ids, continuation ids) pair; results in the input order.

    Pairs that share their context (the choices of a multiple-choice question) and fit the
    window are scored with the context computed once, when the model can reuse a KV cache."""
    window = model.max_length
    for _, continuation in encoded:
        if len(continuation) > window:
            raise DataError(
                f"a continuation of {len(continuation)} tokens does not fit the model's window "
                f"of {window}; it cannot be scored."
            )
    truncated = [len(c) + len(k) > window + 1 for c, k in encoded]
    groups: dict[tuple[int, ...], list[int]] = {}
    if model.shares_contexts:
        for index, (context, continuation) in enumerate(encoded):
            if len(context) + max(len(continuation) - 1, 1) <= window:  # fits the two passes
                groups.setdefault(tuple(context), []).append(index)
        groups = {key: members for key, members in groups.items() if len(members) > 1}
    shared = {index for members in groups.values() for index in members}
    device = model.device
    totals = torch.zeros(len(encoded), dtype=torch.float64, device=device)
    misses = torch.zeros(len(encoded), dtype=torch.long, device=device)
    accumulate = _Accumulator(totals, misses, device)
    rest = [i for i in range(len(encoded)) if i not in shared]
    _score_rows(model, encoded, rest, batch_size, accumulate, progress)
    _score_shared(model, encoded, list(groups.values()), batch_size, accumulate, progress)
    return Scores(
        totals.cpu().numpy(),
        (misses == 0).cpu().numpy(),
        np.asarray([len(k) for _, k in encoded]),
        np.asarray(truncated, dtype=bool),
    )


class _Accumulator:
    """Adds each scored token's log-probability and greedy miss to its pair, on the device."""

    def __init__(self, totals: torch.Tensor, misses: torch.Tensor, device: torch.device):
        self.totals, self.misses, self.device = totals, misses, device

    def tensor(self, values: list[int] | torch.Tensor) -> torch.Tensor:
        """On the device without waiting for it: copies from pinned memory run async."""
        # Lists hold indices; an empty one must still be an index tensor (long), not float.
        cpu = values if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=torch.long)
        if self.device.type == "cuda":
            cpu = cpu.pin_memory()
        return cpu.to(self.device, non_blocking=True)

    def __call__(self, logits: torch.Tensor, targets: list[int], owners: list[int]) -> None:
        targets_t, owners_t = self.tensor(targets), self.tensor(owners)
        logprobs = F.log_softmax(logits.float(), dim=-1)
        picked = logprobs.gather(1, targets_t.unsqueeze(1)).squeeze(1)
        self.totals.index_add_(0, owners_t, picked.double())
        self.misses.index_add_(0, owners_t, (logits.argmax(-1) != targets_t).long())


def _score_rows(model, encoded, indices, batch_size, accumulate, progress) -> None:
    """One right-padded row per pair, longest first; a long pair keeps its last window + 1."""
    window = model.max_length
    sequences = {i: (encoded[i][0] + encoded[i][1])[-(window + 1) :] for i in indices}
    order = sorted(indices, key=lambda i: -len(sequences[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        ids = torch.zeros((len(chunk), len(sequences[chunk[0]]) - 1), dtype=torch.long)
        rows, cols, targets, owners = [], [], [], []
        for row, index in enumerate(chunk):
            sequence, count = sequences[index], len(encoded[index][1])
            inputs = len(sequence) - 1
            ids[row, :inputs] = torch.tensor(sequence[:-1])
            rows += [row] * count
            cols += range(inputs - count, inputs)
            targets += sequence[-count:]
            owners += [index] * count
        tensor = accumulate.tensor
        logits = model.logits_at(tensor(ids), tensor(rows), tensor(cols))
        accumulate(logits, targets, owners)
        if progress is not None:
            progress(len(chunk))


def _score_shared(model, encoded, groups, batch_size, accumulate, progress) -> None:
    """Groups of pairs with one context: up to `batch_size` continuations per forward pair."""
    order = sorted(groups, key=lambda members: -len(encoded[members[0]][0]))
    batch: list[list[int]] = []
    context_length = continuation_length = 0  # the padded sizes: together within the window
    for members in order:
        longest = max(len(encoded[i][1]) for i in members)
        if batch and (
            sum(len(m) for m in batch) + len(members) > batch_size
            or context_length + max(continuation_length - 1, longest - 1, 1) > model.max_length
        ):
            _shared_batch(model, encoded, batch, accumulate, progress)
            batch = []
        if not batch:
            context_length, continuation_length = len(encoded[members[0]][0]), 0
        continuation_length = max(continuation_length, longest)
        batch.append(members)
    if batch:
        _shared_batch(model, encoded, batch, accumulate, progress)


def _shared_batch(model, encoded, batch, accumulate, progress) -> None:
    contexts = [encoded[members[0]][0] for members in batch]
    length = max(len(c) for c in contexts)
    context_ids = torch.zeros((len(batch), length), dtype=torch.long)
    valid = torch.zeros((len(batch), length), dtype=torch.bool)
    for row, context in enumerate(contexts):
        context_ids[row, length - len(context) :] = torch.tensor(context)
        valid[row, length - len(context) :] = True
    pairs = [index for members in batch for index in members]
    owners_of = [group for group, members in enumerate(batch) for _ in members]
    longest = max(len(encoded[i][1]) for i in pairs)
    continuation_ids = torch.zeros((len(pairs), max(longest - 1, 1)), dtype=torch.long)
    rows, cols, first_targets, targets, owners = [], [], [], [], []
    for row, index in enumerate(pairs):
        continuation = encoded[index][1]
        first_targets.append(continuation[0])
        if len(continuation) > 1:  # the last token is only ever a target
            continuation_ids[row, : len(continuation) - 1] = torch.tensor(continuation[:-1])
            rows += [row] * (len(continuation) - 1)
            cols += range(len(continuation) - 1)
            targets += continuation[1:]
            owners += [index] * (len(continuation) - 1)
    tensor = accumulate.tensor
    first, rest = model.shared_context_logits(
        tensor(context_ids),
        tensor(valid),
        tensor(continuation_ids),
        tensor(owners_of),
        tensor(rows),
        tensor(cols),
    )
    accumulate(first[tensor(owners_of)], first_targets, pairs)
    if targets:
        accumulate(rest, targets, owners)
    if progress is not None:
        progress(len(pairs))


def rolling_pairs(model: EvalModel, text: str) -> list[tuple[list[int], list[int]]]:
    """Disjoint windows covering every token of `text` (after the prefix token), each as a
    one-token context and the window's tokens to score, for perplexity."""
    ids = model.encode(text)
    full = ([model.prefix_id] if model.prefix_id is not None else []) + ids
    window = model.max_length
    pairs = []
    for start in range(0, len(full) - 1, window):
        piece = full[start : start + window + 1]
        pairs.append((piece[:1], piece[1:]))
    return pairs


def generate(
    model: EvalModel,
    prompts: Sequence[str],
    max_new_tokens: int,
    stop: list[str],
    batch_size: int,
    progress: Progress | None = None,
) -> tuple[list[str], int]:
    """Greedy continuations of `prompts`, cut before the first stop sequence, and how many
    prompts were cut from the left to leave room for `max_new_tokens`."""
    room = model.max_length - max_new_tokens
    if room < 1:
        raise DataError(
            f"max_new_tokens {max_new_tokens} leaves no room for a prompt in the model's window "
            f"of {model.max_length} tokens; lower max_new_tokens in the task file."
        )
    encoded = model.encode_batch(list(prompts))
    truncated = sum(len(ids) > room for ids in encoded)
    encoded = [ids[-room:] for ids in encoded]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    texts: list[str] = [""] * len(encoded)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for index, text in zip(
            chunk, model.generate([encoded[i] for i in chunk], max_new_tokens, stop)
        ):
            cuts = [text.find(s) for s in stop if s in text]
            texts[index] = text[: min(cuts)] if cuts else text
        if progress is not None:
            progress(len(chunk))
    return texts, truncated
