"""Memory-mapped token files and the dataset that reads them as fixed-length sequences.

A token file is `NAME.bin` (raw little-endian uint16 or uint32 ids) plus `NAME.json` (its
layout, dtype, counts, the tokenizer). Two layouts:

- `stream`: documents concatenated with end-of-text ids; `TokenDataset` cuts it into sequences
  of `seq_len + 1` tokens that overlap by one, so every token is a prediction target once.
- `rows`: one document per row of `seq_len + 1` tokens, padded; `NAME.lengths.npy` and
  `NAME.prompts.npy` hold each row's real length and prompt length, so padding and prompts get
  label -100 (no loss).

Files are written to a temporary name, synced and renamed, so a crash never leaves a truncated
file under the final name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from tessera.core.errors import DataError

FORMAT_VERSION = 1


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_token_file(
    prefix: Path,
    tokens: np.ndarray,
    meta: dict[str, Any],
    lengths: np.ndarray | None = None,
    prompts: np.ndarray | None = None,
) -> None:
    """Write `tokens` (1-D for 'stream', 2-D for 'rows') and their metadata under `prefix`."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(int(meta["vocab_size"]))
    atomic_write_bytes(prefix.with_suffix(".bin"), np.ascontiguousarray(tokens, dtype).tobytes())
    for suffix, array in ((".lengths.npy", lengths), (".prompts.npy", prompts)):
        if array is not None:
            path = prefix.with_name(prefix.name + suffix)
            temporary = path.with_name(path.name + ".tmp")
            with open(temporary, "wb") as handle:
                np.save(handle, array.astype(np.int32))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
    header = {
        "format_version": FORMAT_VERSION,
        "dtype": dtype.str,
        "num_tokens": int(tokens.size),
        "shape": list(tokens.shape),
        **meta,
    }
    atomic_write_text(prefix.with_suffix(".json"), json.dumps(header, indent=1))


class TokenFile:
    """A token file opened read-only as a memory map."""

    def __init__(self, prefix: str | Path) -> None:
        prefix = Path(prefix)
        if prefix.suffix in (".bin", ".json"):
            prefix = prefix.with_suffix("")
        header_path = prefix.with_suffix(".json")
        if not header_path.is_file():
            raise DataError(
                f"token file {str(prefix)!r}: {header_path.name} is missing; write token files "
                "with `tessera data tokenize`."
            )
        self.prefix = prefix
        self.meta: dict[str, Any] = json.loads(header_path.read_text(encoding="utf-8"))
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"token file {str(prefix)!r} has format version {self.meta.get('format_version')}"
                f"; this Tessera reads version {FORMAT_VERSION}."
            )
        shape = tuple(self.meta["shape"])
        expected = int(np.prod(shape)) * np.dtype(self.meta["dtype"]).itemsize
        bin_path = prefix.with_suffix(".bin")
        if not bin_path.is_file() or bin_path.stat().st_size != expected:
            size = bin_path.stat().st_size if bin_path.is_file() else "missing"
            raise DataError(
                f"token file {str(bin_path)!r} should hold {expected} bytes but is {size}; "
                "it is truncated or from another run: tokenize again."
            )
        self.tokens = np.memmap(bin_path, dtype=self.meta["dtype"], mode="r", shape=shape)
        self.lengths = self._side_array(".lengths.npy")
        self.prompts = self._side_array(".prompts.npy")

    @classmethod
    def in_memory(
        cls,
        tokens: np.ndarray,
        meta: dict[str, Any],
        lengths: np.ndarray | None = None,
        prompts: np.ndarray | None = None,
    ) -> TokenFile:
        """Tokens held in memory, read like a file (for text tokenized at start-up): a 1-D
        stream, or 2-D padded rows with their lengths and prompt lengths."""
        self = cls.__new__(cls)
        self.prefix = Path("<memory>")
        layout = "stream" if tokens.ndim == 1 else "rows"
        self.meta = {"layout": layout, "shape": list(tokens.shape), **meta}
        self.tokens = np.ascontiguousarray(tokens, dtype=token_dtype(int(meta["vocab_size"])))
        self.lengths, self.prompts = lengths, prompts
        return self

    def _side_array(self, suffix: str) -> np.ndarray | None:
        path = self.prefix.with_name(self.prefix.name + suffix)
        if not path.is_file():
            return None
        try:
            array = np.load(path, allow_pickle=False)  # an object array would unpickle code
        except (ValueError, OSError, EOFError) as error:
            raise DataError(
                f"{path} is not a plain numeric .npy array ({error}); rewrite it with "
                "`tessera data tokenize`"
            ) from None
        if array.dtype.kind not in "iu":
            raise DataError(f"{path} holds {array.dtype} values; it must hold integers")
        return array

    @property
    def layout(self) -> str:
        return self.meta["layout"]


class TokenDataset(Dataset):
    """Fixed-length sequences `{"input_ids": [seq_len + 1]}` (plus `"labels"` for rows).

    For a `stream` file, `seq_len` may be chosen at read time (default: the one it was
    tokenized for); for `rows` it is fixed by the file. `stride` (stream files only) is the
    distance between the starts of consecutive sequences: `seq_len` (the default) cuts the
    stream into back-to-back sequences; a smaller stride gives overlapping windows, so a model
    trained for many epochs sees the text cut at many different places (1: every start).
    """

    def __init__(
        self, source: str | Path | TokenFile, seq_len: int | None = None, stride: int | None = None
    ) -> None:
        self.file = source if isinstance(source, TokenFile) else TokenFile(source)
        stored = self.file.meta.get("seq_len")
        if self.file.layout == "rows":
            if seq_len is not None and seq_len != stored:
                raise DataError(
                    f"token file {str(self.file.prefix)!r} holds padded rows for seq_len "
                    f"{stored}, not {seq_len}; tokenize again with --seq-len {seq_len}."
                )
            if stride is not None:
                raise DataError(
                    f"token file {str(self.file.prefix)!r} holds padded rows (one document "
                    "each); window_stride applies only to concatenated ('concat') token streams."
                )
            self.seq_len = int(stored)
            self.stride = self.seq_len
        else:
            self.seq_len = int(seq_len or stored)
            if self.file.tokens.size < self.seq_len + 1:
                raise DataError(
                    f"token file {str(self.file.prefix)!r} holds {self.file.tokens.size} tokens, "
                    f"fewer than one sequence of {self.seq_len + 1}; use a smaller seq_len."
                )
            self.stride = self.seq_len if stride is None else int(stride)
            if self.stride < 1:
                raise DataError(f"window_stride must be at least 1, not {self.stride}.")

    @property
    def vocab_size(self) -> int:
        return int(self.file.meta["vocab_size"])

    def __len__(self) -> int:
        if self.file.layout == "rows":
            return self.file.tokens.shape[0]
        return (self.file.tokens.size - self.seq_len - 1) // self.stride + 1

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sequence {index} of {len(self)}")
        index %= len(self)
        if self.file.layout == "stream":
            start = index * self.stride
            window = self.file.tokens[start : start + self.seq_len + 1]
            return {"input_ids": torch.from_numpy(window.astype(np.int64))}
        row = torch.from_numpy(self.file.tokens[index].astype(np.int64))
        positions = torch.arange(row.numel())
        length = int(self.file.lengths[index]) if self.file.lengths is not None else row.numel()
        prompt = int(self.file.prompts[index]) if self.file.prompts is not None else 0
        scored = (positions >= prompt) & (positions < length)
        return {"input_ids": row, "labels": torch.where(scored, row, torch.full_like(row, -100))}
