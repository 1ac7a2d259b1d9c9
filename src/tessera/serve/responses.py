"""OpenAI response bodies and stream chunks for completions and chat completions.

`Reply` collects the outputs of one HTTP request's choices (n choices per prompt) and renders
either the whole response or, while streaming, one chunk per choice that has something new.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tessera.serve.engine import Output, TokenLogprob


@dataclass
class _Choice:
    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    completion_tokens: int = 0
    prompt_tokens: int = 0
    error: str | None = None
    started: bool = False  # chat: the role delta was sent


class Reply:
    """The answer to one request being built: `chat` or plain completions."""

    def __init__(
        self, chat: bool, model: str, choices: int, tokenizer: Any, prefixes: list[str]
    ) -> None:
        self.chat = chat
        self.model = model
        self.tokenizer = tokenizer
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.choices = [_Choice() for _ in range(choices)]
        self.prefixes = prefixes  # echoed prompt text per choice ('' without echo)
        self.prompt_tokens = 0  # counted once per prompt, not per sample

    @property
    def done(self) -> bool:
        return all(c.finish_reason is not None for c in self.choices)

    @property
    def error(self) -> str | None:
        return next((c.error for c in self.choices if c.error), None)

    def add(self, index: int, output: Output) -> None:
        choice = self.choices[index]
        choice.text += output.text
        choice.logprobs += output.logprobs
        choice.completion_tokens = output.completion_tokens
        choice.finish_reason = output.finish_reason
        choice.error = output.error

    def usage(self) -> dict[str, int]:
        completion = sum(c.completion_tokens for c in self.choices)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }

    # -- whole responses -------------------------------------------------------------------

    def body(self) -> dict[str, Any]:
        choices = []
        for index, choice in enumerate(self.choices):
            if self.chat:
                item = {
                    "index": index,
                    "message": {"role": "assistant", "content": choice.text},
                    "logprobs": self._chat_logprobs(choice.logprobs),
                    "finish_reason": _reason(choice.finish_reason),
                }
            else:
                item = {
                    "index": index,
                    "text": self.prefixes[index] + choice.text,
                    "logprobs": self._completion_logprobs(choice.logprobs),
                    "finish_reason": _reason(choice.finish_reason),
                }
            choices.append(item)
        return {
            "id": self.id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(),
        }

    # -- streaming -------------------------------------------------------------------------

    def chunks(self, items: list[tuple[int, Output]], include_usage: bool) -> list[str]:
        """Server-sent events for outputs that arrived together (merged per choice)."""
        merged: dict[int, _Choice] = {}
        for index, output in items:
            piece = merged.setdefault(index, _Choice())
            piece.text += output.text
            piece.logprobs += output.logprobs
            piece.finish_reason = output.finish_reason
            self.add(index, output)
        events = []
        for index, piece in merged.items():
            choice = self.choices[index]
            if piece.finish_reason is None and not piece.text and choice.started:
                continue  # held-back text only: nothing to send yet
            events.append(self._event(self._chunk(index, piece, include_usage)))
        return events

    def closing(self, include_usage: bool) -> list[str]:
        events = []
        if include_usage:
            chunk = self._envelope([])
            chunk["usage"] = self.usage()
            events.append(self._event(chunk))
        return [*events, "data: [DONE]\n\n"]

    def _chunk(self, index: int, piece: _Choice, include_usage: bool) -> dict[str, Any]:
        choice = self.choices[index]
        if self.chat:
            delta: dict[str, Any] = {}
            if not choice.started:
                delta["role"] = "assistant"
            if piece.text or not choice.started:
                delta["content"] = piece.text
            item = {"index": index, "delta": delta, "logprobs": self._chat_logprobs(piece.logprobs)}
        else:
            text = piece.text if choice.started else self.prefixes[index] + piece.text
            item = {
                "index": index,
                "text": text,
                "logprobs": self._completion_logprobs(piece.logprobs),
            }
        choice.started = True
        item["finish_reason"] = _reason(piece.finish_reason)
        chunk = self._envelope([item])
        if include_usage:
            chunk["usage"] = None
        return chunk

    def _envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    @staticmethod
    def _event(data: dict[str, Any]) -> str:
        return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"

    # -- log-probabilities -----------------------------------------------------------------

    def _token(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def _completion_logprobs(self, items: list[TokenLogprob]) -> dict[str, Any] | None:
        if not items:
            return None
        tokens = [self._token(item.token) for item in items]
        offsets, position = [], 0
        for token in tokens:
            offsets.append(position)
            position += len(token)
        return {
            "tokens": tokens,
            "token_logprobs": [item.logprob for item in items],
            "top_logprobs": [{self._token(t): lp for t, lp in item.top} for item in items],
            "text_offset": offsets,
        }

    def _chat_logprobs(self, items: list[TokenLogprob]) -> dict[str, Any] | None:
        if not items:
            return None

        def entry(token_id: int, logprob: float) -> dict[str, Any]:
            text = self._token(token_id)
            return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

        content = []
        for item in items:
            top = [entry(t, lp) for t, lp in item.top]
            content.append({**entry(item.token, item.logprob), "top_logprobs": top})
        return {"content": content}


def _reason(reason: str | None) -> str | None:
    """OpenAI's finish reasons are stop and length; an abort or error never reaches a client."""
    return reason if reason in (None, "stop", "length") else "stop"


def error_event(message: str, kind: str = "server_error") -> str:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return f"data: {json.dumps(body)}\n\n"
