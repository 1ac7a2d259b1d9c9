"""Chat conversations as training tokens: `messages` JSONL, a chat template, loss on the
assistant's turns only.

Each JSONL line holds `{"messages": [{"role": ..., "content": ...}, ...]}`. A conversation is
rendered with a chat template (`tessera.serve.chat_template`: the model's own, recognised from
its Hugging Face files, or the documented default 'role: content' lines) piece by piece: each
message is its role's pattern split at `{content}`. The text before the content (the role
header) is never scored; the assistant's content and what closes its turn (an end-of-turn token)
are. Pieces are tokenized one by one, which is also how a served prompt meets the model: the
prompt ends with the assistant's header and the model writes from there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera.core.errors import ConfigError, DataError

IGNORE = -100
FROM_MODEL = "model"


@dataclass
class EncodedChat:
    """Tokens of one conversation and their labels (-100 where there is no loss)."""

    tokens: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.tokens)


def read_jsonl(paths: Sequence[str | Path]) -> Iterator[tuple[str, Any]]:
    """(where, record) for every non-empty line of the JSONL files, `where` = 'file:line'."""
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise DataError(f"data.path: {str(path)!r} does not exist or is not a file.")
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    yield where, json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(f"{where}: not valid JSON ({error.msg}).") from None


def check_messages(messages: Any, where: str, field: str, roles: Sequence[str]) -> list[dict]:
    """The messages of a record, refusing any without a known role or a string content."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: '{field}' must be a non-empty list of messages.")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise DataError(
                f"{where}: {field}[{index}] has no 'role'; each message is an object with "
                "'role' (system, user or assistant) and 'content'."
            )
        if message["role"] not in roles:
            raise DataError(
                f"{where}: {field}[{index}] has role {message['role']!r}; the chat template "
                f"knows {', '.join(roles)}."
            )
        if not isinstance(message.get("content"), str):
            raise DataError(f"{where}: {field}[{index}] needs a string 'content'.")
    return messages


class ChatEncoder:
    """Renders messages with a template and tokenizes them piece by piece."""

    def __init__(self, tokenizer: Any, template: Any) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self.prefix = special_prefix(tokenizer)

    @property
    def roles(self) -> list[str]:
        return list(self.template.roles)

    def plain(self, text: str) -> list[int]:
        """Token ids of `text` without the tokenizer's added specials (BOS)."""
        if not text:
            return []
        backend = getattr(self.tokenizer, "backend", None)
        if backend is not None:
            return backend.encode(text, add_special_tokens=False).ids
        return self.tokenizer.encode(text)

    def split(self, role: str) -> tuple[str, str]:
        pattern = self.template.roles.get(role) or self.template.roles["user"]
        before, _, after = pattern.partition("{content}")
        return before, after

    def encode(
        self, messages: Sequence[dict], loss_roles: Sequence[str] = ("assistant",)
    ) -> EncodedChat:
        tokens, labels = list(self.prefix), [IGNORE] * len(self.prefix)
        for message in messages:
            before, after = self.split(message["role"])
            scored = message["role"] in loss_roles
            head, body = self.plain(before), self.plain(message["content"] + after)
            tokens += head + body
            labels += [IGNORE] * len(head) + (body if scored else [IGNORE] * len(body))
        return EncodedChat(tokens, labels)

    def prompt(self, messages: Sequence[dict]) -> list[int]:
        """Tokens of a prompt: the messages, then the assistant's opening."""
        encoded = self.encode(messages, loss_roles=())
        return encoded.tokens + self.plain(self.template.generation_prompt)

    def reply(self, content: str) -> list[int]:
        """Tokens of an assistant reply, closing its turn."""
        return self.plain(content + self.split("assistant")[1])


def special_prefix(tokenizer: Any) -> list[int]:
    """The ids a tokenizer puts before every text (a BOS token), found by encoding a probe."""
    probe = "a"
    full = tokenizer.encode(probe)
    backend = getattr(tokenizer, "backend", None)
    plain = backend.encode(probe, add_special_tokens=False).ids if backend is not None else full
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start]
    return []


def tokenizer_and_template(tokenizer_spec: str, template_spec: str, model: Any) -> tuple[Any, Any]:
    """The tokenizer and chat template a chat data set uses: the model's ('model'), or a
    tokenizer spec and a chat_template.json file / 'default'."""
    from tessera.serve.chat_template import DEFAULT_TEMPLATE, load_template

    if tokenizer_spec == FROM_MODEL:
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise ConfigError(
                "data.tokenizer: 'model' takes the model's tokenizer, but the model has none; "
                "start from a model with one (model.init_from) or name a tokenizer."
            )
    else:
        from tessera.data.text.tokenizers import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_spec)
    if template_spec == FROM_MODEL:
        template = getattr(model, "chat_template", None) or DEFAULT_TEMPLATE
    elif template_spec == "default":
        template = DEFAULT_TEMPLATE
    else:
        template = load_template(template_spec)
    return tokenizer, template
