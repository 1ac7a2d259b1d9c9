"""The OpenAI-compatible HTTP API (FastAPI, the `serve` extra), in front of one engine.

Endpoints: `GET /v1/models`, `POST /v1/completions`, `POST /v1/chat/completions`,
`GET /health`, `GET /metrics`. Bodies are parsed by `protocol.py` (not FastAPI's own
validation) so every error is OpenAI's JSON naming the field. With an API key, `/v1/*`
requires `Authorization: Bearer KEY`, compared in constant time. A request whose client goes
away, streaming or not, is aborted and its slot freed at the next engine step.
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' annotations
# (`fa.Request`) as objects, and `fa` is local to build_app.
import asyncio
import contextlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from tessera.core.errors import UserError
from tessera.serve.chat_template import ChatTemplate
from tessera.serve.engine import Output, QueueFull
from tessera.serve.metrics import Metrics
from tessera.serve.protocol import APIError, ChatRequest, CompletionRequest, parse_request
from tessera.serve.responses import Reply, error_event
from tessera.serve.sampling import Sampling
from tessera.serve.worker import EngineWorker

log = logging.getLogger("tessera.serve")


@dataclass
class ServerState:
    """What the routes share."""

    worker: EngineWorker
    model_name: str
    template: ChatTemplate
    metrics: Metrics
    api_key: str | None = None
    max_prompt_tokens: int | None = None
    max_tokens: int | None = None
    created: int = 0

    @property
    def engine(self) -> Any:
        return self.worker.engine


def fastapi() -> Any:
    try:
        import fastapi as module
    except ImportError:
        raise UserError(
            "serving needs FastAPI and uvicorn: pip install 'tessera-train[serve]'"
        ) from None
    return module


def build_app(state: ServerState) -> Any:
    """The ASGI application; its lifespan starts and stops the engine thread."""
    fa = fastapi()
    from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        state.worker.start(asyncio.get_running_loop())
        yield
        state.worker.stop()

    app = fa.FastAPI(title="Tessera", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.exception_handler(APIError)
    async def api_error(request: Any, error: APIError) -> Any:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Any, error: Any) -> Any:
        body = APIError(str(error.detail), status=error.status_code).body()
        return JSONResponse(body, status_code=error.status_code)

    app.add_middleware(CountRequests, metrics=state.metrics)

    @app.get("/health")
    async def health() -> Any:
        engine = state.engine
        return {
            "status": "ok",
            "model": state.model_name,
            "running": len(engine.running),
            "waiting": engine.queue_depth,
        }

    @app.get("/metrics")
    async def metrics() -> Any:
        return PlainTextResponse(
            state.metrics.render(state.engine), media_type="text/plain; version=0.0.4"
        )

    @app.get("/v1/models")
    async def models(request: fa.Request) -> Any:
        check_auth(state, request)
        card = {
            "id": state.model_name,
            "object": "model",
            "created": state.created,
            "owned_by": "tessera",
            "max_model_len": state.engine.capacity,
        }
        return {"object": "list", "data": [card]}

    @app.post("/v1/completions")
    async def completions(request: fa.Request) -> Any:
        check_auth(state, request)
        body = parse_request(await request.body(), CompletionRequest)
        check_model(state, body.model)
        prompts = completion_prompts(state, body)
        prefixes = [state.engine.tokenizer.decode(p) if body.echo else "" for p in prompts]
        sampling = make_sampling(state, body, body.max_tokens, body.logprobs, [], prompts)
        return await answer(state, request, body, prompts, sampling, chat=False, prefixes=prefixes)

    @app.post("/v1/chat/completions")
    async def chat(request: fa.Request) -> Any:
        check_auth(state, request)
        body = parse_request(await request.body(), ChatRequest)
        check_model(state, body.model)
        text = state.template.render([(m.role, m.text()) for m in body.messages])
        prompts = [encode(state, text, "messages")]
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        sampling = make_sampling(
            state, body, body.token_limit(), logprobs, state.template.stop, prompts
        )
        return await answer(state, request, body, prompts, sampling, chat=True, prefixes=[""])

    async def answer(state, request, body, prompts, sampling, chat, prefixes) -> Any:
        reply = Reply(
            chat,
            state.model_name,
            len(prompts) * body.n,
            state.engine.tokenizer,
            [prefix for prefix in prefixes for _ in range(body.n)],
        )
        reply.prompt_tokens = sum(len(p) for p in prompts)
        queue: asyncio.Queue[tuple[int, Output]] = asyncio.Queue()
        ids = submit_all(state, prompts, sampling, body.n, queue)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        if body.stream:
            return StreamingResponse(
                stream(state, reply, queue, ids, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await collect(state, request, reply, queue, ids)

    return app


ENDPOINTS = {"/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions"}


class CountRequests:
    """Counts responses by path and status. Plain ASGI: Starlette's `BaseHTTPMiddleware`
    would pass every streamed chunk through an extra queue."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:  # unknown paths share one label, so scanners cannot grow the metrics
            path = scope["path"] if scope["path"] in ENDPOINTS else "other"
            self.metrics.observe_request(path, status)


# -- request handling helpers ----------------------------------------------------------------


def check_auth(state: ServerState, request: Any) -> None:
    if state.api_key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    given = token.strip().encode() if scheme.lower() == "bearer" else b""
    if not hmac.compare_digest(given, state.api_key.encode()):
        raise APIError(
            "missing or wrong API key: send 'Authorization: Bearer KEY' with the key given to "
            "`tessera serve --api-key`.",
            status=401,
            code="invalid_api_key",
        )


def check_model(state: ServerState, name: str) -> None:
    if name != state.model_name:
        raise APIError(
            f"model: {name!r} is not served here; this server serves {state.model_name!r} "
            "(see GET /v1/models).",
            param="model",
            code="model_not_found",
        )


def encode(state: ServerState, text: str, field: str) -> list[int]:
    try:
        return state.engine.encode(text)
    except UserError as error:
        raise APIError(f"{field}: {error}", param=field) from None


def completion_prompts(state: ServerState, body: CompletionRequest) -> list[list[int]]:
    prompt = body.prompt
    if isinstance(prompt, str):
        return [encode(state, prompt, "prompt")]
    if prompt and all(isinstance(p, int) for p in prompt):
        prompts = [list(prompt)]
    elif all(isinstance(p, str) for p in prompt):
        prompts = [encode(state, p, "prompt") for p in prompt]
    else:
        prompts = [list(p) for p in prompt]
    if not prompts:
        raise APIError("prompt: an empty list; give a string or a list of prompts.", param="prompt")
    vocab = state.engine.vocab
    for ids in prompts:
        bad = [i for i in ids if not 0 <= i < vocab]
        if bad:
            raise APIError(
                f"prompt: token id {bad[0]} is outside the vocabulary (0..{vocab - 1}).",
                param="prompt",
            )
    return prompts


def make_sampling(state, body, max_tokens, logprobs, extra_stop, prompts) -> Sampling:
    capacity = state.engine.capacity
    longest = max(len(p) for p in prompts)
    limit = state.max_prompt_tokens or capacity - 1
    field = "messages" if isinstance(body, ChatRequest) else "prompt"
    if longest > limit:
        raise APIError(
            f"{field}: {longest} tokens, more than the {limit} this server accepts "
            f"(the model's context is {capacity} tokens); shorten it.",
            param=field,
        )
    room = capacity - longest
    if max_tokens is None:  # chat without a limit: what the context leaves, within the server's cap
        max_tokens = min(room, state.max_tokens or room)
    if state.max_tokens is not None and max_tokens > state.max_tokens:
        raise APIError(
            f"max_tokens: {max_tokens} is more than this server's limit of {state.max_tokens}.",
            param="max_tokens",
        )
    sampling = Sampling(
        max_new_tokens=max_tokens,
        temperature=body.temperature,
        top_k=body.top_k_value(),
        top_p=body.top_p if body.top_p < 1.0 else None,
        stop=body.stop_list() + list(extra_stop),
        seed=body.seed,
        logprobs=logprobs,
        ignore_eos=body.ignore_eos,
    )
    for prompt in prompts:
        try:
            state.engine.check_request(prompt, sampling)
        except UserError as error:
            message = str(error)
            param = "max_tokens" if message.startswith("max_tokens") else field
            raise APIError(message, param=param) from None
    return sampling


def submit_all(
    state: ServerState, prompts, sampling: Sampling, n: int, queue: asyncio.Queue
) -> list[int]:
    ids: list[int] = []
    try:
        for p_index, prompt in enumerate(prompts):
            for choice in range(n):
                index = p_index * n + choice
                ids.append(state.worker.submit(prompt, sampling, choice, _putter(queue, index)))
    except QueueFull:
        for sequence_id in ids:
            state.worker.abort(sequence_id)
        raise APIError(
            "the server's queue is full; retry later.",
            status=429,
            kind="rate_limit_error",
            code="queue_full",
        ) from None
    return ids


def _putter(queue: asyncio.Queue, index: int) -> Any:
    return lambda output: queue.put_nowait((index, output))


def _drain(queue: asyncio.Queue, first: tuple[int, Output]) -> list[tuple[int, Output]]:
    items = [first]
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def stream(
    state: ServerState, reply: Reply, queue: asyncio.Queue, ids: list[int], include_usage: bool
) -> Any:
    try:
        while not reply.done:
            items = _drain(queue, await queue.get())
            for event in reply.chunks(items, include_usage):
                yield event
            if reply.error:
                yield error_event(reply.error)
                break
        for event in reply.closing(include_usage):
            yield event
    finally:
        if not reply.done:  # the client went away (or the server stops): free the slots
            for sequence_id in ids:
                state.worker.abort(sequence_id)


async def collect(
    state: ServerState, request: Any, reply: Reply, queue: asyncio.Queue, ids: list[int]
) -> Any:
    watcher = asyncio.ensure_future(_watch_disconnect(request))
    try:
        while not reply.done:
            getter = asyncio.ensure_future(queue.get())
            finished, _ = await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in finished:
                getter.cancel()
                break  # disconnected
            for index, output in _drain(queue, getter.result()):
                reply.add(index, output)
    finally:
        watcher.cancel()
        if not reply.done:
            for sequence_id in ids:
                state.worker.abort(sequence_id)
    if not reply.done:
        raise APIError("the client disconnected", status=499)
    if reply.error:
        status = (
            504 if "timed out" in reply.error else 503 if "shutting down" in reply.error else 500
        )
        raise APIError(reply.error, status=status, kind="server_error")
    return reply.body()


async def _watch_disconnect(request: Any) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(0.25)
