"""Text generation with a KV cache: greedy, temperature, top-k, top-p, stop sequences, batches.

Prompts of different lengths in one batch are left-padded; an attention mask keeps padding out
of attention and positions count real tokens only, so each row decodes exactly as it would
alone. With `use_cache=False` every step recomputes the whole sequence (the reference the KV
cache is tested against, and the baseline of the generation benchmark). Past the model's
`max_seq_len`, both modes continue over a sliding window of the last `max_seq_len` tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from tessera.core.errors import UserError
from tessera.serve.sampling import Sampling, choose_next

__all__ = ["Sampling", "choose_next", "generate_ids", "generate_text"]


# Decoding calls attention with a new key length at every token. cuDNN's attention backend
# builds a fresh execution plan for each new shape (measured on an H100: ~60 ms a token, 20
# tokens/s for a 125M model), so generation keeps to the flash, memory-efficient and math ones.
_DECODING_BACKENDS = [
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.MATH,
]


@torch.no_grad()
@sdpa_kernel(_DECODING_BACKENDS)
def generate_ids(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    sampling: Sampling,
    eos_id: int | None = None,
    use_cache: bool = True,
    should_stop: Callable[[int, list[int]], bool] | None = None,
) -> list[list[int]]:
    """New token ids for each prompt (without the prompt), ending at eos, a `should_stop(row,
    new_ids)` hit, or `max_new_tokens`."""
    sampling.check()
    if not prompts or any(len(p) == 0 for p in prompts):
        raise UserError("every prompt needs at least one token (an empty prompt gives none).")
    max_len = model.config.max_seq_len
    longest = max(len(p) for p in prompts)
    if longest > max_len:
        raise UserError(
            f"prompt of {longest} tokens is longer than the model's max_seq_len ({max_len}); "
            "shorten the prompt."
        )
    was_training = model.training
    model.eval()
    device = model.embed.weight.device
    generator = None
    if sampling.seed is not None:
        generator = torch.Generator(device=device).manual_seed(sampling.seed)
    batch = len(prompts)
    ids = torch.zeros(batch, longest, dtype=torch.long, device=device)
    valid = torch.zeros(batch, longest, dtype=torch.bool, device=device)
    for row, prompt in enumerate(prompts):
        ids[row, longest - len(prompt) :] = torch.tensor(list(prompt), device=device)
        valid[row, longest - len(prompt) :] = True
    padded = not bool(valid.all())
    capacity = min(longest + sampling.max_new_tokens, max_len)
    cache = model.new_cache(batch, capacity) if use_cache else None
    outputs: list[list[int]] = [[] for _ in range(batch)]
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    step_input = ids
    for _ in range(sampling.max_new_tokens):
        if cache is not None and cache.length + step_input.shape[1] > max_len:
            cache = None  # past max_seq_len: slide a window over the last max_len tokens
        if cache is not None:
            logits = model.run(step_input, cache=cache, attention_mask=valid if padded else None)
        else:
            window_valid = valid[:, -max_len:]
            mask = window_valid if not bool(window_valid.all()) else None
            logits = model.run(ids[:, -max_len:], attention_mask=mask)
        next_ids = choose_next(logits[:, -1], sampling, generator)
        next_ids = torch.where(finished, torch.zeros_like(next_ids), next_ids)
        for row, token in enumerate(next_ids.tolist()):
            if finished[row]:
                continue
            if eos_id is not None and token == eos_id:
                finished[row] = True
                continue
            outputs[row].append(token)
            if should_stop is not None and should_stop(row, outputs[row]):
                finished[row] = True
        if bool(finished.all()):
            break
        ids = torch.cat([ids, next_ids.unsqueeze(1)], dim=1)
        valid = torch.cat([valid, torch.ones_like(valid[:, :1])], dim=1)
        step_input = next_ids.unsqueeze(1)
    model.train(was_training)
    return outputs


def generate_text(
    model: torch.nn.Module,
    tokenizer: object,
    prompts: Sequence[str],
    sampling: Sampling,
    use_cache: bool = True,
    engine: Any = None,
) -> list[str]:
    """Continuations of text prompts, cut before the first stop sequence.

    With the cache this runs the serving engine (`tessera.serve.engine`; a new one unless
    `engine` is given), the same decoder as `tessera serve`; sample i of identical prompts uses
    noise stream i. `use_cache=False` runs the recomputing reference `generate_ids` instead."""
    if use_cache:
        from tessera.serve.offline import Job, engine_for, run_jobs

        engine = engine or engine_for(model, tokenizer, len(prompts))
        seen: dict[str, int] = {}
        jobs = []
        for prompt in prompts:
            jobs.append(Job(engine.encode(prompt), sampling, choice=seen.get(prompt, 0)))
            seen[prompt] = seen.get(prompt, 0) + 1
        return [completion.text for completion in run_jobs(engine, jobs)]
    encoded = [tokenizer.encode(prompt) for prompt in prompts]
    vocab = model.config.vocab_size
    for prompt, tokens in zip(prompts, encoded):
        if tokens and max(tokens) >= vocab:
            raise UserError(
                f"the tokenizer gives id {max(tokens)} for prompt {prompt[:40]!r}, outside the "
                f"model's vocabulary of {vocab}: tokenizer and model do not belong together."
            )

    def hit_stop(row: int, new_ids: list[int]) -> bool:
        tail = tokenizer.decode(new_ids[-64:])
        return any(stop in tail for stop in sampling.stop)

    new_ids = generate_ids(
        model,
        encoded,
        sampling,
        eos_id=getattr(tokenizer, "eos_id", None),
        use_cache=False,
        should_stop=hit_stop if sampling.stop else None,
    )
    texts = []
    for ids in new_ids:
        text = tokenizer.decode(ids)
        cuts = [text.find(stop) for stop in sampling.stop if stop in text]
        texts.append(text[: min(cuts)] if cuts else text)
    return texts
