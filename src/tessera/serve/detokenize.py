"""Token ids to streamed text: incremental decoding and stop sequences.

Decoding one token at a time is not the same as decoding the whole sequence: a byte-level
tokenizer may split one character over several tokens, and BPE decoders join pieces using
their neighbours. `TextStream` therefore decodes a short window of recent tokens and emits the
part that grew, holding back text that ends in an incomplete character. Stop sequences are
matched on the text, and any tail that could still become a stop sequence is held back, so a
client never receives part of a stop string. The final text equals decoding all ids and
cutting before the first stop sequence, as `generate_text` does.
"""

from __future__ import annotations

from typing import Any

_REPLACEMENT = "\ufffd"  # what decoders put where a character is still incomplete
_CONTEXT = 6  # tokens of left context kept when decoding the newest ones


class TextStream:
    """Text of one generated sequence, released as it becomes final."""

    def __init__(self, tokenizer: Any, stop: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.ids: list[int] = []
        self.decoded = ""  # text decoded so far (before stop handling)
        self.sent = 0  # characters of `decoded` already released
        self.stopped = False
        self._prefix_start = 0  # ids[_prefix_start:_read] decode to context already counted
        self._read = 0

    def push(self, token_id: int) -> str:
        """Add a token; return the text it releases ('' while held back)."""
        self.ids.append(token_id)
        context = self.tokenizer.decode(self.ids[self._prefix_start : self._read])
        window = self.tokenizer.decode(self.ids[self._prefix_start :])
        if len(window) > len(context) and not window.endswith(_REPLACEMENT):
            self.decoded += window[len(context) :]
            self._read = len(self.ids)
            self._prefix_start = max(0, self._read - _CONTEXT)
        return self._release(final=False)

    def finish(self) -> str:
        """The sequence ended: release everything left (an incomplete character included)."""
        context = self.tokenizer.decode(self.ids[self._prefix_start : self._read])
        window = self.tokenizer.decode(self.ids[self._prefix_start :])
        self.decoded += window[len(context) :]
        self._read = len(self.ids)
        return self._release(final=True)

    @property
    def text(self) -> str:
        """All text released so far."""
        return self.decoded[: self.sent]

    def _release(self, final: bool) -> str:
        if self.stopped:
            return ""
        cut = self._first_stop()
        if cut is not None:
            self.stopped = True
            end = cut
        elif final:
            end = len(self.decoded)
        else:
            end = len(self.decoded) - self._partial_stop_tail()
        released = self.decoded[self.sent : end]
        self.sent = max(self.sent, end)
        return released

    def _first_stop(self) -> int | None:
        # A stop sequence cannot begin inside text already released (that text never ends
        # with the start of one), so only the unreleased part is searched.
        hits = [i for i in (self.decoded.find(s, self.sent) for s in self.stop) if i >= 0]
        return min(hits) if hits else None

    def _partial_stop_tail(self) -> int:
        """Length of the longest unreleased tail that is the beginning of a stop sequence."""
        longest = 0
        pending = self.decoded[self.sent :]
        for stop in self.stop:
            for size in range(min(len(stop) - 1, len(pending)), longest, -1):
                if pending.endswith(stop[:size]):
                    longest = size
                    break
        return longest
