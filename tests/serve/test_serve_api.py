"""The HTTP API through a real uvicorn server on loopback and the real `openai` client."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import torch
from serve_support import greedy_reference, tiny_gpt

from tessera.cli.main import main
from tessera.models.gpt.checkpoint import load_gpt, save_gpt
from tessera.serve.chat_template import DEFAULT_TEMPLATE
from tessera.serve.engine import EngineConfig
from tessera.serve.generate import Sampling, generate_ids
from tessera.serve.server import Server, bind, make_state

KEY = "test-key-123"


def start_server(model_dir: Path, config: EngineConfig, api_key: str | None = KEY) -> Server:
    model = load_gpt(model_dir)
    state = make_state(model, DEFAULT_TEMPLATE, "tiny", config, api_key=api_key)
    return Server(state, bind("127.0.0.1", 0), graceful_seconds=2).start()


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[Server]:
    torch.set_num_threads(1)
    running = start_server(model_dir, EngineConfig(max_batch=8, prefill_chunk=16))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{server.port}/v1", api_key=KEY, max_retries=0, timeout=60
    )


@pytest.fixture(scope="module")
def model(model_dir: Path) -> object:
    return load_gpt(model_dir)


def greedy_text(model, prompt: str, steps: int) -> str:
    """What the server must answer at temperature 0: greedy text up to end-of-text."""
    ids = greedy_reference(model, model.tokenizer.encode(prompt), steps, eos=True)
    return model.tokenizer.decode(ids)


def test_completion_at_temperature_0_is_the_models_greedy_decoding(
    client, model, capsys, model_dir
) -> None:
    response = client.completions.create(
        model="tiny", prompt="ROMEO:", max_tokens=20, temperature=0
    )
    expected = greedy_text(model, "ROMEO:", 20)
    assert response.choices[0].text == expected and len(expected) == 20
    assert response.choices[0].finish_reason == "length"
    usage = response.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (6, 20, 26)
    # The prompt as token ids, and echo: the same continuation.
    ids = model.tokenizer.encode("ROMEO:")
    echoed = client.completions.create(
        model="tiny", prompt=ids, max_tokens=20, temperature=0, echo=True
    )
    assert echoed.choices[0].text == "ROMEO:" + expected
    # `tessera generate` runs the same engine: the same text.
    assert (
        main(
            ["generate", str(model_dir), "--prompt", "ROMEO:", "--greedy", "--max-new-tokens", "20"]
        )
        == 0
    )
    printed = capsys.readouterr().out.split("\n" + "-" * 40)[0]
    assert printed == "ROMEO:" + expected


def test_streaming_sends_the_same_text_in_openai_chunks(client, server) -> None:
    whole = client.completions.create(model="tiny", prompt="JULIET:", max_tokens=25, temperature=0)
    chunks = list(
        client.completions.create(
            model="tiny",
            prompt="JULIET:",
            max_tokens=25,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text and len(chunks) > 3
    assert (
        chunks[-1].choices == []
        and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    )
    raw = httpx.post(
        f"http://127.0.0.1:{server.port}/v1/completions",
        json={"model": "tiny", "prompt": "Hi", "max_tokens": 5, "stream": True},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    events = [line for line in raw.text.split("\n\n") if line]
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "data: [DONE]" and all(e.startswith("data: ") for e in events)


def test_chat_uses_the_template_and_streams(client, model) -> None:
    messages = [{"role": "system", "content": "Hi"}, {"role": "user", "content": "O Romeo"}]
    response = client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=15, temperature=0
    )
    prompt = "system: Hi\nuser: O Romeo\nassistant: "
    expected = greedy_text(model, prompt, 15)
    for stop in DEFAULT_TEMPLATE.stop:
        expected = expected.split(stop)[0]
    assert prompt == DEFAULT_TEMPLATE.render([("system", "Hi"), ("user", "O Romeo")])
    assert response.choices[0].message.content == expected
    assert response.choices[0].message.role == "assistant"
    assert response.usage.prompt_tokens == len(prompt)
    stream = client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=15, temperature=0, stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_stop_sequences_cut_the_text_before_them(client, model) -> None:
    free = greedy_text(model, "ROMEO:", 30)
    stop = free[8:11]
    expected = free[: free.index(stop)]
    for stream in (False, True):
        response = client.completions.create(
            model="tiny",
            prompt="ROMEO:",
            max_tokens=30,
            temperature=0,
            stop=[stop, "@@"],
            stream=stream,
        )
        if stream:
            pieces = list(response)
            text, reason = (
                "".join(p.choices[0].text for p in pieces),
                pieces[-1].choices[0].finish_reason,
            )
        else:
            text, reason = response.choices[0].text, response.choices[0].finish_reason
        assert (text, reason) == (expected, "stop")


def test_seeds_reproduce_and_n_gives_distinct_choices(client) -> None:
    options = {
        "model": "tiny",
        "prompt": "O",
        "max_tokens": 20,
        "temperature": 1.0,
        "seed": 42,
        "n": 3,
    }
    first = client.completions.create(**options)
    second = client.completions.create(**options)
    texts = [c.text for c in first.choices]
    assert texts == [c.text for c in second.choices]
    assert [c.index for c in first.choices] == [0, 1, 2] and len(set(texts)) == 3
    assert first.usage.completion_tokens == sum(len(t) for t in texts)  # one character a token
    other = client.completions.create(**{**options, "seed": 43})
    assert [c.text for c in other.choices] != texts


def test_logprobs_report_the_chosen_and_best_tokens(client) -> None:
    response = client.completions.create(
        model="tiny", prompt="ROMEO:", max_tokens=5, temperature=0, logprobs=2
    )
    logprobs = response.choices[0].logprobs
    assert "".join(logprobs.tokens) == response.choices[0].text
    for chosen, value, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs):
        assert value <= 0 and len(top) == 2
        assert max(top.values()) == pytest.approx(value) and chosen in top  # greedy = best


def test_the_api_key_is_required(server) -> None:
    base = f"http://127.0.0.1:{server.port}/v1"
    wrong = openai.OpenAI(base_url=base, api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="API key"):
        wrong.completions.create(model="tiny", prompt="x", max_tokens=1)
    assert httpx.get(f"{base}/models").status_code == 401
    assert httpx.get(f"http://127.0.0.1:{server.port}/health").json()["status"] == "ok"


def test_bad_requests_get_openai_errors_naming_the_field(client, server) -> None:
    with pytest.raises(
        openai.BadRequestError, match=r"prompt: 600 tokens, more than the 511"
    ) as error:
        client.completions.create(model="tiny", prompt="a" * 600, max_tokens=1)
    assert error.value.body["param"] == "prompt"
    with pytest.raises(openai.BadRequestError, match="max_tokens") as error:
        client.completions.create(model="tiny", prompt="ROMEO", max_tokens=510)
    assert error.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError, match="not served here") as error:
        client.completions.create(model="gpt-4", prompt="x")
    assert error.value.body["param"] == "model"
    url, headers = (
        f"http://127.0.0.1:{server.port}/v1/completions",
        {"Authorization": f"Bearer {KEY}"},
    )
    cases = {
        b"{not json": None,
        json.dumps({"model": "tiny", "prompt": "x", "temperature": "hot"}).encode(): "temperature",
        json.dumps({"model": "tiny", "prompt": "x", "max_tokens": 0}).encode(): "max_tokens",
        json.dumps({"model": "tiny", "prompt": "x", "top_p": 1.5}).encode(): "top_p",
        json.dumps(
            {"model": "tiny", "prompt": "x", "frequency_penalty": 0.5}
        ).encode(): "frequency_penalty",
        json.dumps({"model": "tiny", "prompt": "x", "colour": 1}).encode(): "colour",
        json.dumps({"model": "tiny"}).encode(): "prompt",
        json.dumps({"model": "tiny", "prompt": "~~~"}).encode(): "prompt",  # not in the alphabet
    }
    for body, field in cases.items():
        answer = httpx.post(
            url, content=body, headers={**headers, "Content-Type": "application/json"}
        )
        error = answer.json()["error"]
        assert answer.status_code == 400 and error["type"] == "invalid_request_error", body
        assert error["param"] == field and (field is None or error["message"].startswith(field)), (
            error
        )
    chat = httpx.post(
        url.replace("completions", "chat/completions"),
        json={"model": "tiny", "messages": [{"role": "robot", "content": "x"}]},
        headers=headers,
    )
    assert chat.status_code == 400 and chat.json()["error"]["param"] == "messages.0.role"


def test_64_concurrent_clients_each_get_their_own_answer(server, model) -> None:
    prompts = [f"JULIET: {i} " + "Romeo" * (i % 5) for i in range(64)]
    encoded = [model.tokenizer.encode(p) for p in prompts]
    greedy = Sampling(max_new_tokens=10, temperature=0.0)
    eos = model.tokenizer.eos_id
    reference = generate_ids(model, encoded, greedy, eos_id=eos, use_cache=False)
    expected = [model.tokenizer.decode(ids) for ids in reference]

    async def one(client: openai.AsyncOpenAI, index: int) -> str:
        options = {"model": "tiny", "prompt": prompts[index], "max_tokens": 10, "temperature": 0}
        if index % 2:
            stream = await client.completions.create(**options, stream=True)
            return "".join([chunk.choices[0].text async for chunk in stream])
        return (await client.completions.create(**options)).choices[0].text

    async def everyone() -> list[str]:
        async with openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{server.port}/v1", api_key=KEY, max_retries=0, timeout=60
        ) as client:
            return await asyncio.wait_for(asyncio.gather(*(one(client, i) for i in range(64))), 120)

    started = time.monotonic()
    answers = asyncio.run(everyone())
    assert answers == expected  # every client, its own prompt's text (eos in the reference too)
    assert time.monotonic() - started < 120


def test_metrics_count_requests_tokens_and_latency(client, server) -> None:
    client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=3, temperature=0)
    text = httpx.get(f"http://127.0.0.1:{server.port}/metrics").text
    assert re.search(
        r'tessera_requests_total\{endpoint="/v1/completions",status="200"\} [1-9]', text
    )
    assert re.search(r"tessera_generation_tokens_total [1-9]", text)
    assert re.search(r"tessera_time_to_first_token_seconds_count [1-9]", text)
    assert "tessera_queue_depth 0" in text and "tessera_kv_slots 8" in text


@pytest.fixture()
def one_slot_server(tmp_path: Path) -> Iterator[Server]:
    """One slot, one queue place, and a model slow enough (a few ms a token on a CPU) that a
    2000-token request is still running while the test acts."""
    save_gpt(tiny_gpt(max_seq_len=2048, d_model=256, n_layer=4), tmp_path / "slow")
    running = start_server(tmp_path / "slow", EngineConfig(max_batch=1, max_queue=1), api_key=None)
    yield running
    running.stop()


def wait_for(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_a_client_leaving_mid_stream_frees_its_slot_and_a_full_queue_answers_429(
    one_slot_server,
) -> None:
    engine = one_slot_server.state.engine
    url = f"http://127.0.0.1:{one_slot_server.port}/v1/completions"
    long = {
        "model": "tiny",
        "prompt": "ROMEO:",
        "max_tokens": 2000,
        "temperature": 0,
        "stream": True,
        "ignore_eos": True,
    }
    sync = openai.OpenAI(base_url=url.rsplit("/", 1)[0], api_key="none", max_retries=0, timeout=60)
    with httpx.Client(timeout=60) as http, http.stream("POST", url, json=long) as response:
        lines = response.iter_lines()  # kept: dropping the iterator would close the stream
        assert next(lines).startswith("data: ")
        assert len(engine.running) == 1  # the only slot is taken

        async def queued() -> str:
            async with openai.AsyncOpenAI(
                base_url=url.rsplit("/", 1)[0], api_key="none", max_retries=0
            ) as client:
                task = asyncio.ensure_future(
                    client.completions.create(
                        model="tiny", prompt="Hi", max_tokens=3, temperature=0
                    )
                )
                await asyncio.get_running_loop().run_in_executor(
                    None, wait_for, lambda: engine.queue_depth == 1
                )
                with pytest.raises(openai.RateLimitError, match="queue is full"):
                    sync.completions.create(model="tiny", prompt="Hi", max_tokens=3)
                response.close()  # the streaming client goes away mid-stream
                return (await asyncio.wait_for(task, 60)).choices[0].text

        text = asyncio.run(queued())
    assert len(text) == 3
    wait_for(lambda: not engine.running and engine.queue_depth == 0)
    assert one_slot_server.state.metrics.finished["abort"] == 1
    assert one_slot_server.state.metrics.generation_tokens < 2000
