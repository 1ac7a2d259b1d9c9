"""Chat templates: how a list of messages becomes the prompt text a model continues.

A template is data, never code: `chat_template.json` beside the model's `config.json` holds one
pattern per role, with `{content}` where the message goes (plain substitution, nothing is
evaluated), the text that opens the assistant's turn, and stop sequences that end it:

    {"format": "tessera-chat", "version": 1,
     "roles": {"system": "system: {content}\\n", "user": "user: {content}\\n",
               "assistant": "assistant: {content}\\n"},
     "generation_prompt": "assistant: ", "stop": ["\\nuser:"]}

A model saved without one gets `DEFAULT_TEMPLATE`, the 'role: content' lines that
`tessera data tokenize` renders chat records with (`data/text/documents.py: render_chat`), so a
model fine-tuned on Tessera-tokenized chat data answers in the format it was trained on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessera.core.errors import UserError

TEMPLATE_NAME = "chat_template.json"
FORMAT = "tessera-chat"


@dataclass(frozen=True)
class ChatTemplate:
    roles: dict[str, str]
    generation_prompt: str
    stop: list[str] = field(default_factory=list)
    source: str = "default"

    def render(self, messages: list[tuple[str, str]]) -> str:
        """The prompt for (role, content) messages, ending with the assistant's opening."""
        parts = []
        for role, content in messages:
            pattern = self.roles.get(role) or self.roles.get("user", "{content}\n")
            parts.append(pattern.replace("{content}", content))
        return "".join(parts) + self.generation_prompt

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": 1,
            "roles": self.roles,
            "generation_prompt": self.generation_prompt,
            "stop": self.stop,
        }


DEFAULT_TEMPLATE = ChatTemplate(
    roles={
        "system": "system: {content}\n",
        "developer": "system: {content}\n",
        "user": "user: {content}\n",
        "assistant": "assistant: {content}\n",
    },
    generation_prompt="assistant: ",
    stop=["\nuser:", "\nsystem:"],
)


def load_template(path: str | Path) -> ChatTemplate:
    """A template from a `chat_template.json` file, refusing anything malformed by name."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"chat template {path}: not readable JSON ({error}).") from None
    return template_from_dict(data, str(path))


def template_from_dict(data: Any, path: str) -> ChatTemplate:
    """A template from its `to_dict()` form (`path` names where it came from in errors)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(
            f'chat template {path}: expected a JSON object with "format": "{FORMAT}" '
            "(roles, generation_prompt, stop); see docs/serve.md."
        )
    roles = data.get("roles")
    if not isinstance(roles, dict) or "user" not in roles:
        raise UserError(
            f"chat template {path}: 'roles' must map role names to patterns, 'user' included."
        )
    for role, pattern in roles.items():
        if not isinstance(pattern, str) or "{content}" not in pattern:
            raise UserError(
                f"chat template {path}: roles.{role} must be a string with {{content}} in it."
            )
    prompt, stop = data.get("generation_prompt", ""), data.get("stop", [])
    if (
        not isinstance(prompt, str)
        or not isinstance(stop, list)
        or not all(isinstance(s, str) for s in stop)
    ):
        raise UserError(
            f"chat template {path}: generation_prompt must be a string and stop a list of strings."
        )
    return ChatTemplate(
        roles=dict(roles), generation_prompt=prompt, stop=list(stop), source=str(path)
    )


def find_template(model_folder: str | Path | None) -> ChatTemplate:
    """The template saved beside the model (chat_template.json, or the one an exported model's
    config.json carries), a Hugging Face folder's (recognised by
    `tessera.models.gpt.hf_chat`), or the default."""
    if model_folder is None:
        return DEFAULT_TEMPLATE
    folder = Path(model_folder)
    if (folder / TEMPLATE_NAME).is_file():
        return load_template(folder / TEMPLATE_NAME)
    config = folder / "config.json"
    try:
        saved = json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}
    except (OSError, json.JSONDecodeError):
        saved = {}
    if isinstance(saved, dict) and saved.get("chat_template"):
        return template_from_dict(saved["chat_template"], str(config))
    if (folder / "tokenizer_config.json").is_file() or (folder / "chat_template.jinja").is_file():
        from tessera.models.gpt.hf_chat import hf_chat_template

        return hf_chat_template(folder)
    return DEFAULT_TEMPLATE


def save_template(template: ChatTemplate, model_folder: str | Path) -> Path:
    """Write `chat_template.json` into a model folder (atomically)."""
    path = Path(model_folder) / TEMPLATE_NAME
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(template.to_dict(), indent=1), encoding="utf-8")
    os.replace(temporary, path)
    return path
