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
    """Score every (context ids, continuation ids) pair; results in the input order."""
    window = model.max_length
    sequences, lengths, truncated = [], [], []
    for context, continuation in encoded:
        if len(continuation) > window:
            raise DataError(
                f"a continuation of {len(continuation)} tokens does not fit the model's window "
                f"of {window}; it cannot be scored."
            )
        whole = context + continuation
        truncated.append(len(whole) > window + 1)
        whole = whole[-(window + 1) :]
        sequences.append(whole)
        lengths.append(len(continuation))
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    device = model.device
    totals = torch.zeros(len(sequences), dtype=torch.float64, device=device)
    misses = torch.zeros(len(sequences), dtype=torch.long, device=device)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        longest = len(sequences[chunk[0]]) - 1
        ids = torch.zeros((len(chunk), longest), dtype=torch.long)
        rows, cols, targets, owners = [], [], [], []
        for row, index in enumerate(chunk):
            sequence, count = sequences[index], lengths[index]
            inputs = len(sequence) - 1
            ids[row, :inputs] = torch.tensor(sequence[:-1])
            rows += [row] * count
            cols += range(inputs - count, inputs)
            targets += sequence[-count:]
            owners += [index] * count
        to = {"device": device, "non_blocking": True}
        logits = model.logits_at(
            ids.to(**to), torch.tensor(rows).to(**to), torch.tensor(cols).to(**to)
        )
        targets_t = torch.tensor(targets).to(**to)
        owners_t = torch.tensor(owners).to(**to)
        logprobs = F.log_softmax(logits.float(), dim=-1)
        picked = logprobs.gather(1, targets_t.unsqueeze(1)).squeeze(1)
        totals.index_add_(0, owners_t, picked.double())
        misses.index_add_(0, owners_t, (logits.argmax(-1) != targets_t).long())
        if progress is not None:
            progress(len(chunk))
    return Scores(
        totals.cpu().numpy(),
        (misses == 0).cpu().numpy(),
        np.asarray(lengths),
        np.asarray(truncated, dtype=bool),
    )


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
