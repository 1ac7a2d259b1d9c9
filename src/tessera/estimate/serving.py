"""Serving cost: dollars per million generated tokens at each concurrency, and the break-even
between what training cost and what serving costs.

Tokens per second come from, in order of preference: a serving benchmark JSON (`--benchmark`),
generation measured here (`--probe`, `tessera.serve.generate`), or the table: a decode step of
`c` concurrent sequences on a GPU takes the longest of

    memory   (weight bytes + KV-cache bytes of c sequences) / bandwidth
    compute  2 x parameters x c / (peak x 0.5)
    floor    parameter tensors x 40.5 us      (kernel launches; fitted: the 125M GPT decodes
             at 6.05 ms a token at batch 1 and 5.74 ms at batch 32 on an H100, llm.md §4)

    $ per million tokens = price per hour / (tokens/s x 3600) x 1e6
    break-even tokens    = training dollars / ($ per token)

The benchmark JSON format accepted (one object per concurrency):

    {"results": [{"concurrency": 1, "tokens_per_second": 165.4}, ...]}

("batch" for "concurrency" and "tokens_per_s" for "tokens_per_second" are also read, and the
list may sit under "generation" or be the whole file.)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera.core.errors import UserError
from tessera.estimate.hardware import Hardware

DECODE_SECONDS_PER_TENSOR = 6.05e-3 / 148
DECODE_MFU = 0.5
PROMPT_TOKENS = 16


@dataclass
class ServingPoint:
    concurrency: int
    tokens_per_second: float
    source: str

    def dollars_per_million(self, price_per_hour: float) -> float:
        return price_per_hour / (self.tokens_per_second * 3600) * 1e6


def read_benchmark(path: str | Path) -> list[ServingPoint]:
    """Tokens/s per concurrency from a serving benchmark JSON (format in the module docstring)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"--benchmark: {path} is not readable JSON ({error})") from None
    rows = data
    if isinstance(data, dict):
        rows = data.get("results", data.get("generation"))
    if not isinstance(rows, list) or not rows:
        raise UserError(
            f"--benchmark: {path} holds no list of results; expected "
            '{"results": [{"concurrency": 1, "tokens_per_second": 165.4}, ...]}'
        )
    points = []
    for index, row in enumerate(rows):
        concurrency = row.get("concurrency", row.get("batch")) if isinstance(row, dict) else None
        rate = (
            row.get("tokens_per_second", row.get("tokens_per_s")) if isinstance(row, dict) else None
        )
        if not isinstance(concurrency, int) or not isinstance(rate, (int, float)) or rate <= 0:
            raise UserError(
                f"--benchmark: {path} result {index} ({row!r}) needs an integer 'concurrency' and "
                "a positive 'tokens_per_second'"
            )
        if isinstance(row, dict) and row.get("kv_cache") is False:
            continue  # a no-cache baseline is not how a server decodes
        points.append(ServingPoint(concurrency, float(rate), f"benchmark {path.name}"))
    return sorted(points, key=lambda p: p.concurrency)


def model_shape(run: str | Path) -> Any:
    """The exported GPT of a run folder, built on the meta device (shape only)."""
    import torch

    from tessera.models.gpt import GPT, GPTConfig
    from tessera.models.gpt.checkpoint import find_checkpoint, read_export_config

    shape = read_export_config(find_checkpoint(run))["model"]
    with torch.device("meta"):
        return GPT(GPTConfig.model_validate(shape))


def table_points(
    model: Any, hardware: Hardware, concurrencies: list[int], new_tokens: int = 128
) -> list[ServingPoint]:
    """Decode tokens/s from the roofline and the launch floor (module docstring)."""
    config = model.config
    parameters = sum(p.numel() for p in model.parameters())
    tensors = sum(1 for _ in model.parameters())
    weight_bytes = parameters * 2  # served in bf16
    context = PROMPT_TOKENS + new_tokens / 2  # the average cached length over a generation
    kv_per_sequence = 2 * config.n_layer * config.kv_heads * config.head_dim * 2 * context
    peak = hardware.peak_for("bf16")
    floor = tensors * DECODE_SECONDS_PER_TENSOR if hardware.name != "cpu" else 0.0
    points = []
    for c in concurrencies:
        memory = (weight_bytes + c * kv_per_sequence) / hardware.bandwidth
        compute = 2 * parameters * c / (peak * DECODE_MFU)
        step = max(memory, compute, floor)
        points.append(ServingPoint(c, c / step, f"table ({hardware.name})"))
    return points


def probe_points(
    run: str | Path, concurrencies: list[int], new_tokens: int = 64
) -> list[ServingPoint]:
    """Greedy generation of `new_tokens` after a 16-token prompt, timed here per concurrency."""
    import torch

    from tessera.models.gpt.checkpoint import load_gpt
    from tessera.serve.generate import Sampling, generate_ids

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_gpt(run, device=device)
    if device == "cuda":
        model = model.to(torch.bfloat16)
    vocab = model.config.vocab_size
    points = []
    for c in concurrencies:
        prompts = [[(row * 7 + i) % vocab for i in range(PROMPT_TOKENS)] for row in range(c)]
        generate_ids(model, prompts, Sampling(max_new_tokens=4, temperature=0.0))  # warm-up
        _synchronize(device)
        start = time.perf_counter()
        outputs = generate_ids(model, prompts, Sampling(max_new_tokens=new_tokens, temperature=0.0))
        _synchronize(device)
        seconds = time.perf_counter() - start
        produced = sum(len(row) for row in outputs)
        points.append(ServingPoint(c, produced / seconds, f"probe ({device})"))
    return points


def break_even(
    training_dollars: float, point: ServingPoint, price: float, revenue_per_million: float | None
) -> dict[str, float | None]:
    """Tokens whose serving costs what training did; with a revenue per million tokens, the
    tokens whose margin pays the training back (None when serving loses money)."""
    per_token = point.dollars_per_million(price) / 1e6
    result: dict[str, float | None] = {
        "tokens_costing_the_training": training_dollars / per_token if per_token else None
    }
    if revenue_per_million is not None:
        margin = revenue_per_million / 1e6 - per_token
        result["tokens_to_pay_back_training"] = training_dollars / margin if margin > 0 else None
    return result


def _synchronize(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
