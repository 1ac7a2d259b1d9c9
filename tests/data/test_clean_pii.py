"""Personal data: card numbers only with a valid Luhn checksum, phone numbers in common formats
(not dates or plain numbers), e-mail and IP addresses inside running text, secrets with a known
shape; each redacted and counted per kind, through a real clean as well."""

from __future__ import annotations

import pytest
from clean_support import output_records, write_jsonl

from tessera.data.clean import CleanConfig, clean, find_pii, redact
from tessera.data.clean.pii import luhn_valid
from tessera.data.clean.planted import synthetic_documents


@pytest.mark.parametrize(
    ("text", "kind", "found"),
    [
        ("pay with 4111 1111 1111 1111 today", "card", True),  # Visa test number
        ("pay with 4111-1111-1111-1111 today", "card", True),
        ("amex 378282246310005.", "card", True),
        ("pay with 4111 1111 1111 1112 today", "card", False),  # checksum fails
        ("order 1234567890123 shipped", "card", False),
        ("zeros 0000 0000 0000 0000", "card", False),
        ("call +1 (555) 123-4567 now", "phone", True),
        ("call 555-123-4567 now", "phone", True),
        ("call 555.123.4567 now", "phone", True),
        ("ring +44 20 7946 0958 or", "phone", True),
        ("ring 020 7946 0958 or", "phone", True),
        ("ring +49 30 1234567 or", "phone", True),
        ("on 2021-03-04 we met", "phone", False),
        ("between 1990 2000 years", "phone", False),
        ("chapter 12 verse 3", "phone", False),
        ("write to jane.doe+news@example.co.uk, please", "email", True),
        ("(mailto:bob@mail.example.org)", "email", True),
        ("an @ sign alone, or user@localhost", "email", False),
        ("served from 192.168.10.254.", "ip", True),
        ("v6 at 2001:db8::8a2e:370:7334 here", "ip", True),
        ("not 999.1.1.1 nor 10.0.0", "ip", False),
        ("the time was 12:30:45", "ip", False),
        ("key AKIAIOSFODNN7EXAMPLE leaked", "secret", True),
        ("token ghp_" + "a1B2" * 9 + " leaked", "secret", True),
        ('config api_key = "s3cr3t-value-123"', "secret", True),
        ("password: correcthorsebattery", "secret", True),
        ("the key to the city", "secret", False),
    ],
)
def test_detection(text, kind, found):
    kinds = [k for _, _, k in find_pii(text)]
    assert (kind in kinds) is found, kinds


def test_luhn():
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")


def test_redaction_replaces_each_match_and_counts_per_kind():
    text = (
        "Contact jane@example.com or +1 (555) 123-4567 from 10.1.2.3; card "
        "5555 5555 5555 4444; email again: joe@example.org."
    )
    redacted, counts = redact(text)
    assert redacted == ("Contact <EMAIL> or <PHONE> from <IP>; card <CARD>; email again: <EMAIL>.")
    assert counts == {"email": 2, "phone": 1, "ip": 1, "card": 1}


def test_clean_redacts_and_counts(tmp_path):
    documents = synthetic_documents(6, seed=7)
    documents[1] += "\n\nWrite to ann.smith@example.com or call 555-867-5309."
    documents[3] += "\n\nCard 4111 1111 1111 1111, server 172.16.0.9."
    folder = write_jsonl(tmp_path / "in", documents, files=1)
    config = CleanConfig.model_validate({"pii": {"mode": "redact"}})
    report = clean([str(folder)], str(tmp_path / "out"), config, progress=False)
    assert report["pii"] == {"email": 1, "phone": 1, "ip": 1, "card": 1, "secret": 0}
    texts = [r["text"] for r in output_records(tmp_path / "out")]
    assert "Write to <EMAIL> or call <PHONE>." in texts[1]
    assert "Card <CARD>, server <IP>." in texts[3]
    assert not any("example.com" in t or "4111" in t for t in texts)
    assert "pii" not in report["removed"]

    config = CleanConfig.model_validate({"pii": {"mode": "remove", "kinds": ["card"]}})
    report = clean([str(folder)], str(tmp_path / "removed"), config, progress=False)
    assert report["removed"]["pii"]["documents"] == 1
    assert report["output"]["documents"] == 5
    assert report["pii"] == {"card": 1}
