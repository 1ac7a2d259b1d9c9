"""The OpenAI request bodies the server accepts, validated, and OpenAI-style errors.

Pydantic only (a core dependency), so the offline batch mode validates its JSONL lines with the
same models as the HTTP server. Unknown fields and options Tessera does not implement
(penalties, logit_bias, tools, ...) are refused by name instead of being silently ignored.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tessera.core.errors import UserError


class APIError(UserError):
    """An error answered as OpenAI's `{"error": {...}}` JSON with an HTTP status."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        param: str | None = None,
        kind: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.param, self.kind, self.code = (
            message,
            status,
            param,
            kind,
            code,
        )

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return {"error": error}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class _Common(BaseModel):
    """Options shared by completions and chat completions."""

    model_config = ConfigDict(extra="forbid")

    model: str
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1, description="extension; -1, 0 or None = off")
    n: int = Field(1, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    ignore_eos: bool = Field(False, description="extension: keep generating past end-of-text")
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None

    def unsupported(self) -> list[str]:
        """Fields set to values Tessera does not implement."""
        names = []
        if self.presence_penalty != 0:
            names.append("presence_penalty")
        if self.frequency_penalty != 0:
            names.append("frequency_penalty")
        if self.logit_bias:
            names.append("logit_bias")
        return names

    def stop_list(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4:
            raise APIError("stop: at most 4 stop sequences are accepted.", param="stop")
        return stops

    def top_k_value(self) -> int | None:
        return self.top_k if self.top_k is not None and self.top_k > 0 else None


class CompletionRequest(_Common):
    """`POST /v1/completions`."""

    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=1)
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None

    def unsupported(self) -> list[str]:
        names = super().unsupported()
        if self.best_of not in (None, 1, self.n):
            names.append("best_of")
        if self.suffix:
            names.append("suffix")
        return names


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatRequest(_Common):
    """`POST /v1/chat/completions`."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[Any] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None

    def unsupported(self) -> list[str]:
        names = super().unsupported()
        names += [name for name in ("tools", "tool_choice") if getattr(self, name)]
        if self.response_format and self.response_format.get("type") != "text":
            names.append("response_format")
        return names

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


def _is_union_tag(part: Any) -> bool:
    """Pydantic puts the tried union member ('str', 'list[int]') into an error's location."""
    return isinstance(part, str) and (part in {"str", "int", "float", "bool"} or "[" in part)


def parse_request(raw: bytes | str | dict[str, Any], schema: type[_Common]) -> Any:
    """Validate a request body, raising `APIError` (400) that names the first bad field."""
    if isinstance(raw, dict):
        data = raw
    else:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise APIError(f"the request body is not valid JSON ({error}).") from None
    if not isinstance(data, dict):
        raise APIError("the request body must be a JSON object.")
    try:
        request = schema.model_validate(data)
    except ValidationError as error:
        item = error.errors()[0]
        field = ".".join(str(part) for part in item["loc"] if not _is_union_tag(part)) or None
        if item["type"] == "extra_forbidden":
            message = f"{field}: unrecognized request argument."
        elif item["type"] == "missing":
            message = f"{field}: required."
        else:
            message = f"{field}: {item['msg']} (got {json.dumps(item.get('input'))[:80]})."
        raise APIError(message, param=field) from None
    unsupported = request.unsupported()
    if unsupported:
        raise APIError(
            f"{unsupported[0]}: not supported by this server (leave it at its default).",
            param=unsupported[0],
        )
    return request
