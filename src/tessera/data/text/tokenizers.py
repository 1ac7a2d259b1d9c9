"""Tokenizers: character-level for small demos, raw bytes, and byte-level BPE.

Every tokenizer serialises to a plain dict (`to_dict`), which is how it is saved next to the
data it produced and inside an exported model's config.json, so a checkpoint always carries the
tokenizer it was trained with. BPE uses Hugging Face `tokenizers` (the `tokenizers` extra),
imported only when a BPE tokenizer is trained or loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tessera.core.errors import ConfigError, DataError

EOS_TOKEN = "<|endoftext|>"


class Tokenizer:
    """Text to token ids and back."""

    kind = "base"
    eos_id: int | None = None

    @property
    def vocab_size(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(text) for text in texts]

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as JSON (atomically)."""
        from tessera.data.text.token_file import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), ensure_ascii=False))


class CharTokenizer(Tokenizer):
    """One id per character of a fixed alphabet (sorted), plus an optional end-of-text id."""

    kind = "char"

    def __init__(self, chars: Sequence[str], eos: bool = False) -> None:
        self.chars = list(chars)
        self._ids = {c: i for i, c in enumerate(self.chars)}
        self.eos_id = len(self.chars) if eos else None

    @classmethod
    def train(cls, texts: Iterable[str], eos: bool = False) -> CharTokenizer:
        alphabet: set[str] = set()
        for text in texts:
            alphabet.update(text)
        return cls(sorted(alphabet), eos=eos)

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + (1 if self.eos_id is not None else 0)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._ids[c] for c in text]
        except KeyError as error:
            raise DataError(
                f"character {error.args[0]!r} is not in this character tokenizer's alphabet of "
                f"{len(self.chars)} characters (trained on other text); retrain the tokenizer on "
                "text that includes it."
            ) from None

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i] if i < len(self.chars) else "" for i in ids)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "char", "chars": "".join(self.chars), "eos": self.eos_id is not None}


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes as ids 0-255, end-of-text 256: needs no training, handles any text."""

    kind = "byte"
    eos_id = 256

    @property
    def vocab_size(self) -> int:
        return 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "byte"}


class BPETokenizer(Tokenizer):
    """Byte-level BPE (GPT-2's scheme) backed by Hugging Face `tokenizers`."""

    kind = "bpe"

    def __init__(self, backend: Any, eos_token: str | None = None) -> None:
        self.backend = backend
        self.eos_token = eos_token  # None: Tessera's own end-of-text token
        self.eos_id = backend.token_to_id(eos_token or EOS_TOKEN)

    @classmethod
    def train(
        cls, files: Sequence[str | Path], vocab_size: int, min_frequency: int = 2
    ) -> BPETokenizer:
        """Learn merges from text files (see `tessera data tokenizer train`)."""
        tk = _tokenizers()
        backend = tk.Tokenizer(tk.models.BPE())
        backend.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[EOS_TOKEN],
            initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=True,
        )
        backend.train([str(f) for f in files], trainer)
        return cls(backend)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.backend.encode_batch(list(texts))]

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)

    def to_dict(self) -> dict[str, Any]:
        data = {"kind": "bpe", "tokenizer": json.loads(self.backend.to_str())}
        if self.eos_token is not None:
            data["eos_token"] = self.eos_token
        return data


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:
        raise ConfigError(
            "BPE tokenizers need the Hugging Face `tokenizers` package: "
            "pip install 'tessera-train[tokenizers]'"
        ) from None
    return tokenizers


def tokenizer_from_dict(data: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from `Tokenizer.to_dict()` output."""
    kind = data.get("kind")
    if kind == "char":
        return CharTokenizer(list(data["chars"]), eos=bool(data.get("eos")))
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        backend = _tokenizers().Tokenizer.from_str(json.dumps(data["tokenizer"]))
        return BPETokenizer(backend, data.get("eos_token"))
    raise ConfigError(f"tokenizer kind {kind!r} is unknown; accepted: 'char', 'byte', 'bpe'.")


def load_tokenizer(spec: str) -> Tokenizer:
    """A tokenizer from a spec: a JSON file saved by Tessera, 'byte', 'char:TEXT_FILE' (the
    sorted set of characters of that file, no end-of-text id; a bundled data set's name such
    as 'char:tinyshakespeare' works too), or an exported model's folder
    (run folder, final/ or its config.json: the tokenizer saved with the model)."""
    if spec == "byte":
        return ByteTokenizer()
    if spec.startswith("char:"):
        from tessera.data.root import resolve

        corpus = Path(resolve(spec[len("char:") :], f"tokenizer {spec!r}"))
        if not corpus.is_file():
            raise DataError(f"tokenizer {spec!r}: {str(corpus)!r} is not a text file.")
        return CharTokenizer.train([corpus.read_text(encoding="utf-8")])
    path = Path(spec)
    for candidate in (path / "config.json", path / "final" / "config.json"):
        if path.is_dir() and candidate.is_file():
            path = candidate
            break
    if not path.is_file():
        raise ConfigError(
            f"tokenizer {spec!r}: no such file; give a tokenizer JSON written by "
            "`tessera data tokenizer train`, 'byte', or 'char:PATH/TO/TEXT'."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"tokenizer file {str(path)!r} is not readable JSON: {error}") from None
    if str(data.get("format", "")).startswith("tessera"):  # an exported model's config.json
        if not data.get("tokenizer"):
            raise ConfigError(f"{str(path)!r}: the model was exported without a tokenizer.")
        data = data["tokenizer"]
    if "kind" not in data and "model" in data:  # a raw Hugging Face tokenizer.json
        data = {"kind": "bpe", "tokenizer": data}
    return tokenizer_from_dict(data)
