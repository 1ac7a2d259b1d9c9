"""One document's text and the views of it that dedup and the filters share, computed once.

Normalised text is lower-cased, with ASCII punctuation turned into spaces and runs of
whitespace collapsed to one space; "words" are its space-separated pieces. Word and n-gram
hashes come from one prefix hash of the normalised bytes (a polynomial hash modulo 2^64,
finished with a 64-bit mixer), so every n-gram of every length costs a few array operations
instead of hashing each string in Python.
"""

from __future__ import annotations

import string
from functools import cached_property

import numpy as np
import xxhash

_PUNCTUATION = bytes.maketrans(string.punctuation.encode(), b" " * len(string.punctuation))
_BASE = np.uint64(0x100000001B3)
_BASE_INVERSE = np.uint64(pow(int(_BASE), -1, 1 << 64))
_powers = np.ones(1, dtype=np.uint64)
_inverse_powers = np.ones(1, dtype=np.uint64)


def _power_tables(length: int) -> tuple[np.ndarray, np.ndarray]:
    """BASE^i and BASE^-i (mod 2^64) for i < length, grown on demand and kept."""
    global _powers, _inverse_powers
    if len(_powers) < length:
        size = max(length, 2 * len(_powers), 1 << 16)
        one = np.ones(1, dtype=np.uint64)
        with np.errstate(over="ignore"):
            _powers = np.concatenate([one, np.cumprod(np.full(size - 1, _BASE))])
            _inverse_powers = np.concatenate([one, np.cumprod(np.full(size - 1, _BASE_INVERSE))])
    return _powers, _inverse_powers


_SHIFT = np.uint64(33)
_MIX1, _MIX2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)


def mix64(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: spreads every input bit over the output (arrays wrap
    around silently on overflow, as intended)."""
    values = values ^ (values >> _SHIFT)
    values = values * _MIX1
    values = values ^ (values >> _SHIFT)
    values = values * _MIX2
    return values ^ (values >> _SHIFT)


def normalize_bytes(text: str) -> bytes:
    """UTF-8 of the text lower-cased, ASCII punctuation to spaces, whitespace runs to one space.
    (Working on bytes is several times faster than `str.translate` on non-ASCII text; only
    ASCII bytes change, so the result is valid UTF-8.)"""
    return b" ".join(text.lower().encode("utf-8").translate(_PUNCTUATION).split())


def normalize(text: str) -> str:
    """Lower case, ASCII punctuation to spaces, whitespace runs to one space."""
    return normalize_bytes(text).decode("utf-8")


def text_hash(text: str) -> int:
    """The 64-bit hash of a text's normalised form (what exact deduplication compares)."""
    return xxhash.xxh3_64_intdigest(normalize_bytes(text))


class Document:
    """A document's text plus lazily computed, cached views of it."""

    def __init__(self, text: str) -> None:
        self.text = text

    @cached_property
    def tokens(self) -> list[str]:
        """Whitespace-separated pieces of the raw text (punctuation kept)."""
        return self.text.split()

    @cached_property
    def lines(self) -> list[str]:
        """Non-empty lines, stripped."""
        return [line for line in (raw.strip() for raw in self.text.splitlines()) if line]

    @cached_property
    def paragraphs(self) -> list[str]:
        """Blocks separated by blank lines, stripped."""
        blocks = (block.strip() for block in self.text.replace("\r\n", "\n").split("\n\n"))
        return [block for block in blocks if block]

    @cached_property
    def normalized_bytes(self) -> bytes:
        return normalize_bytes(self.text)

    @cached_property
    def normalized(self) -> str:
        return self.normalized_bytes.decode("utf-8")

    @cached_property
    def words(self) -> list[str]:
        return self.normalized.split(" ") if self.normalized else []

    @cached_property
    def exact_hash(self) -> int:
        return xxhash.xxh3_64_intdigest(self.normalized_bytes)

    @cached_property
    def _bytes(self) -> np.ndarray:
        return np.frombuffer(self.normalized_bytes, dtype=np.uint8)

    @cached_property
    def _prefix(self) -> np.ndarray:
        """prefix[i] = sum of byte[j] * BASE^j for j < i (mod 2^64)."""
        data = self._bytes
        powers, _ = _power_tables(len(data) + 1)
        prefix = np.zeros(len(data) + 1, dtype=np.uint64)
        np.cumsum(data.astype(np.uint64) * powers[: len(data)], out=prefix[1:])
        return prefix

    @cached_property
    def word_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Byte offsets (start, end) of each word in the normalised text."""
        data = self._bytes
        if not len(data):
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        spaces = np.flatnonzero(data == 32)
        starts = np.concatenate([[0], spaces + 1])
        ends = np.concatenate([spaces, [len(data)]])
        return starts, ends

    def ngram_hashes(self, n: int) -> np.ndarray:
        """A 64-bit hash of each run of `n` consecutive words (one if there are fewer)."""
        cache = self.__dict__.setdefault("_ngrams", {})
        if n not in cache:
            starts, ends = self.word_bounds
            if not len(starts):
                return np.zeros(0, dtype=np.uint64)
            count = min(n, len(starts))
            first, last = starts[: len(starts) - count + 1], ends[count - 1 :]
            _, inverse = _power_tables(len(self._bytes) + 1)
            cache[n] = mix64((self._prefix[last] - self._prefix[first]) * inverse[first])
        return cache[n]

    @cached_property
    def word_hashes(self) -> np.ndarray:
        return self.ngram_hashes(1)

    @cached_property
    def word_lengths(self) -> np.ndarray:
        starts, ends = self.word_bounds
        return ends - starts
