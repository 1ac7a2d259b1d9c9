"""Personal data and secrets in text: find them, count them per kind, and redact them.

Kinds: `email`, `phone`, `ip` (IPv4 and IPv6), `card` (payment-card numbers that pass the Luhn
checksum) and `secret` (keys and tokens with a known shape, private-key blocks, and values
assigned to names such as `api_key` or `password`). Each match is replaced by `<KIND>`.

What this does not catch (see docs/data/clean.md): names, postal addresses, dates of birth,
national identity numbers, IBANs, phone numbers written without separators or a leading `+`,
numbers spelled out in words, secrets with no recognisable prefix or label, and anything
obfuscated ("john at example dot com"). Version strings shaped like IPv4 addresses
("1.2.3.4") are redacted as IPs.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable

KINDS = ("secret", "email", "card", "ip", "phone")  # the order they are searched in

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
PHONE = re.compile(
    r"(?<![\w+])(?:(?P<plus>\+)\d{1,3}[ .-]?)?(?:(?P<paren>\(\d{1,4}\))[ .-]?)?"
    r"\d{1,4}(?:[ .-]\d{2,8}){1,4}(?![\w])"
)
_DATE = re.compile(r"\d{4}[-.]\d{2}[-.]\d{2}|\d{2}[-.]\d{2}[-.]\d{4}")
SECRET = re.compile(
    r"AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{36,}"  # GitHub tokens
    r"|github_pat_[A-Za-z0-9_]{40,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}"  # Stripe
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|sk-[A-Za-z0-9_-]{20,}"  # OpenAI-style keys
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JSON web tokens
    r"|-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z]+ )*PRIVATE KEY-----"
)
LABELLED_SECRET = re.compile(
    r"(?i)\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|password|passwd)"
    r"[\"']?\s*[:=]\s*[\"']?(?P<value>[^\s\"',;]{8,})"
)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment-card number carries."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card(match: re.Match[str]) -> bool:
    digits = re.sub(r"[ -]", "", match.group())
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    separators = set(re.findall(r"[ -]", match.group()))
    return len(separators) <= 1 and luhn_valid(digits)


def _ipv6(match: re.Match[str]) -> bool:
    text = match.group()
    if text.count(":") < 2 or not re.search(r"[0-9A-Fa-f]", text):
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _phone(match: re.Match[str]) -> bool:
    text = match.group()
    digits = sum(c.isdigit() for c in text)
    if not 7 <= digits <= 15 or _DATE.fullmatch(text):
        return False
    groups = len(re.findall(r"\d+", text))
    marked = match.group("plus") is not None or match.group("paren") is not None
    return marked or groups >= 3


def _spans(text: str, kinds: Iterable[str]) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, kind) of every match, earlier kinds first."""
    taken: list[tuple[int, int, str]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e, _ in taken)

    for kind in kinds:
        for start, end in _matches(text, kind):
            if free(start, end):
                taken.append((start, end, kind))
    return sorted(taken)


def _matches(text: str, kind: str) -> Iterable[tuple[int, int]]:
    if kind == "email":
        if "@" in text:
            yield from (m.span() for m in EMAIL.finditer(text))
    elif kind == "card":
        yield from (m.span() for m in CARD.finditer(text) if _card(m))
    elif kind == "ip":
        yield from (m.span() for m in IPV4.finditer(text))
        if "::" in text or text.count(":") >= 2:
            yield from (m.span() for m in IPV6.finditer(text) if _ipv6(m))
    elif kind == "phone":
        yield from (m.span() for m in PHONE.finditer(text) if _phone(m))
    elif kind == "secret":
        yield from (m.span() for m in SECRET.finditer(text))
        yield from (m.span("value") for m in LABELLED_SECRET.finditer(text))


def find_pii(text: str, kinds: Iterable[str] = KINDS) -> list[tuple[int, int, str]]:
    """Every match as (start, end, kind), in text order."""
    wanted = set(kinds)
    return _spans(text, [kind for kind in KINDS if kind in wanted])


def redact(text: str, kinds: Iterable[str] = KINDS) -> tuple[str, Counter[str]]:
    """The text with each match replaced by `<KIND>`, and the number of matches per kind."""
    spans = find_pii(text, kinds)
    counts: Counter[str] = Counter(kind for _, _, kind in spans)
    if not spans:
        return text, counts
    pieces, last = [], 0
    for start, end, kind in spans:
        pieces.append(text[last:start])
        pieces.append(f"<{kind.upper()}>")
        last = end
    pieces.append(text[last:])
    return "".join(pieces), counts
