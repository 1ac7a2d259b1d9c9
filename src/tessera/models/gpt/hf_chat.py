"""A Hugging Face model's chat template as Tessera template data (`serve/chat_template.py`).

Hugging Face ships chat templates as Jinja programs in `tokenizer_config.json` (or
`chat_template.jinja`). Tessera never executes what it reads, so instead of running the program
it recognises the template family by the special tokens the program writes, and uses that
family's layout as plain patterns: Llama 3 headers, ChatML (Qwen2 and many others), or
Llama 2 / Mistral `[INST]` turns. A template of no known family falls back to the default
('role: content' lines) and says so. The recognised family is named in the template's source.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tessera.serve.chat_template import DEFAULT_TEMPLATE, ChatTemplate

log = logging.getLogger(__name__)

_LLAMA3 = "<|start_header_id|>{role}<|end_header_id|>\n\n{{content}}<|eot_id|>"
_CHATML = "<|im_start|>{role}\n{{content}}<|im_end|>\n"


def _llama3(eos: str) -> ChatTemplate:
    roles = {r: _LLAMA3.format(role=r) for r in ("system", "user", "assistant")}
    prompt = "<|start_header_id|>assistant<|end_header_id|>\n\n"
    return ChatTemplate(roles=roles, generation_prompt=prompt, stop=["<|eot_id|>"])


def _chatml(eos: str) -> ChatTemplate:
    roles = {r: _CHATML.format(role=r) for r in ("system", "user", "assistant")}
    return ChatTemplate(
        roles=roles, generation_prompt="<|im_start|>assistant\n", stop=["<|im_end|>"]
    )


def _inst(eos: str) -> ChatTemplate:
    roles = {
        "system": "[INST] {content} [/INST]",  # Llama 2 folds it into the first user turn
        "user": "[INST] {content} [/INST]",
        "assistant": " {content}" + eos,
    }
    return ChatTemplate(roles=roles, generation_prompt="", stop=[eos] if eos else [])


# (family, the markers its Jinja program writes, the layout)
FAMILIES = (
    ("llama3", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), _llama3),
    ("chatml", ("<|im_start|>", "<|im_end|>"), _chatml),
    ("inst", ("[INST]", "[/INST]"), _inst),
)


def template_source(folder: Path) -> tuple[str | None, str]:
    """The Jinja text of a Hugging Face folder's chat template (None if it has none) and the
    file it came from."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8"), str(jinja)
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None, str(config)
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None, str(config)
    text = data.get("chat_template")
    if isinstance(text, list):  # named templates: take the default one
        named = {t.get("name"): t.get("template") for t in text if isinstance(t, dict)}
        text = named.get("default") or next(iter(named.values()), None)
    return (text if isinstance(text, str) else None), str(config)


def recognise(text: str | None, where: str, eos_token: str = "") -> ChatTemplate:
    """The template of the family whose markers `text` contains, or the default."""
    if text is None:
        return DEFAULT_TEMPLATE
    for family, markers, layout in FAMILIES:
        if all(marker in text for marker in markers):
            template = layout(eos_token)
            return ChatTemplate(
                template.roles,
                template.generation_prompt,
                template.stop,
                source=f"{where} ({family} layout, recognised from its special tokens)",
            )
    log.warning(
        "%s: the chat template is of no family Tessera recognises (Llama 3, ChatML, [INST]); "
        "using the default 'role: content' template instead (docs/llm.md)",
        where,
    )
    return DEFAULT_TEMPLATE


def hf_chat_template(folder: str | Path, eos_token: str | None = None) -> ChatTemplate:
    """The chat template of a Hugging Face model folder, as Tessera template data
    (`eos_token` ends an [INST] assistant turn; by default tokenizer_config.json's)."""
    folder = Path(folder)
    text, where = template_source(folder)
    if eos_token is None:
        eos_token = ""
        try:
            settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
            eos_token = special_token(settings.get("eos_token")) or ""
        except (OSError, json.JSONDecodeError, AttributeError):
            pass
    return recognise(text, where, eos_token)


def special_token(value: Any) -> str | None:
    """A special token's text from tokenizer_config.json (a string or an AddedToken dict)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None
