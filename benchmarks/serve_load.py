"""Streaming load on an OpenAI-compatible /v1/completions endpoint, with httpx only.

Runs `--clients` concurrent clients, each sending `--requests` streaming requests one after the
other (a closed loop), and prints one JSON object: per request the start time, the time of the
first chunk and the arrival time and token count of every chunk. Token counts come from the
text (the benchmark's tokenizer gives one character per token) and are checked against the
final usage chunk. `serve_benchmark.py` starts several of these processes so that parsing the
stream never limits the server; it also works against any other OpenAI-compatible server.

    python benchmarks/serve_load.py --url http://127.0.0.1:8000/v1 --model m --clients 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time

import httpx


async def one_request(client: httpx.AsyncClient, url: str, body: dict) -> dict:
    started = time.time()
    arrivals: list[tuple[float, int]] = []
    usage = None
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            return {"error": f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"}
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices", []):
                if choice.get("text"):
                    arrivals.append((time.time(), len(choice["text"])))
    return {"start": started, "chunks": arrivals, "usage": usage}


async def client_loop(
    client, url, model, requests, prompt_len, max_tokens, vocab, seed, begin
) -> list[dict]:
    rng = random.Random(seed)
    warm_up = {"model": model, "prompt": [1, 2, 3], "max_tokens": 2, "stream": True}
    await one_request(client, url, warm_up)  # the connection and the client's first-call costs
    await asyncio.sleep(max(0.0, begin - time.time()))
    records = []
    for _ in range(requests):
        body = {
            "model": model,
            "prompt": [rng.randrange(vocab) for _ in range(prompt_len)],
            "max_tokens": max_tokens,
            "temperature": 0,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        records.append(await one_request(client, url, body))
    return records


async def run(args: argparse.Namespace) -> list[dict]:
    limits = httpx.Limits(
        max_connections=args.clients + 4, max_keepalive_connections=args.clients + 4
    )
    async with httpx.AsyncClient(timeout=args.timeout, limits=limits) as client:
        loops = [
            client_loop(
                client,
                args.url + "/completions",
                args.model,
                args.requests,
                args.prompt_len,
                args.max_tokens,
                args.vocab,
                args.seed * 1000 + i,
                args.begin,
            )
            for i in range(args.clients)
        ]
        results = await asyncio.gather(*loops)
    return [record for records in results for record in records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="base URL ending in /v1")
    parser.add_argument("--model", required=True)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--requests", type=int, default=2, help="requests per client, in turn")
    parser.add_argument("--prompt-len", type=int, default=32, help="random token ids per prompt")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=50000, help="prompt ids are drawn below this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--begin", type=float, default=0.0, help="wall-clock time to start at")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        records = runner.run(run(args))
    json.dump({"records": records}, sys.stdout)


if __name__ == "__main__":
    main()
