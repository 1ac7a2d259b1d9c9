"""`ProvenanceRecorder`: which data sets trained this model, and how much of each.

It finds the data sets behind the training dataloader when the fit starts (each stream of a
mixing `StreamingDataset`, the folder of a token file, or an unnamed in-memory data set), reads
each one's provenance manifest, and after every batch adds the batch's samples and tokens to
the data set they came from. For a stream mix, the consumed positions of the epoch's global
order say which stream each sample belongs to; tokens are shared out in proportion to samples
(exact for fixed-length sequences, the case of packed token data). The counts are part of its
checkpointed state, so a resumed run keeps counting where it stopped; a resume on other data
keeps the earlier data sets' counts beside the new ones. At the end of the fit it writes
`provenance.json` into the final model folder. A data set without a manifest is recorded as
"unknown source".

    callbacks:
      provenance: {}            # writes RUN/final/provenance.json
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from tessera.core.callback import Callback
from tessera.core.component import ComponentConfig
from tessera.data.provenance import MANIFEST_NAME, TRAINING_STATE_KIND, UNKNOWN_SOURCE, dumps
from tessera.data.training_provenance import training_record

log = logging.getLogger(__name__)
STATE_VERSION = 1


def _unwrap(dataset: Any) -> Any:
    while hasattr(dataset, "dataset") and hasattr(dataset, "indices"):  # torch Subset
        dataset = dataset.dataset
    return dataset


def _manifest(location: str) -> dict[str, Any] | None:
    from tessera.data.provenance import read_manifest

    try:
        return read_manifest(location)
    except Exception as error:  # an unreadable manifest must not stop training
        log.warning("provenance: cannot read the manifest of %s (%s)", location, error)
        return None


class ProvenanceConfig(ComponentConfig):
    folder: str | None = Field(None, description="where to write provenance.json (RUN/final)")


class ProvenanceRecorder(Callback):
    """Counts the samples and tokens each data set contributes; see the module docstring."""

    Config = ProvenanceConfig

    def __init__(self, config: ProvenanceConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.folder = self.config.folder
        self.records: dict[str, dict[str, Any]] = {}
        self.batches = 0
        self._streams: Any = None
        self._bounds: np.ndarray | None = None
        self._names: list[str] = []

    # -- finding the data sets -------------------------------------------------------------
    def fit_start(self, state: Any, logger: Any) -> None:
        loader = state.train_dataloader
        dataset = _unwrap(getattr(loader, "dataset", loader))
        streams = getattr(dataset, "streams", None)
        if streams is not None and hasattr(dataset, "order") and hasattr(dataset, "sizes"):
            self._streams = dataset
            self._bounds = np.cumsum(dataset.sizes)
            self._names = [stream.source_url() for stream in streams]
        else:
            prefix = getattr(getattr(dataset, "file", None), "prefix", None)
            if prefix is not None and str(prefix) != "<memory>":
                self._names = [str(Path(prefix).resolve().parent)]
            else:
                self._names = [f"<{type(dataset).__name__} built in memory>"]
        for name in self._names:
            if name not in self.records:
                manifest = _manifest(name) if not name.startswith("<") else None
                self.records[name] = {"samples": 0, "tokens": 0, "manifest": manifest}
            if self.records[name]["manifest"] is None:
                log.warning("provenance: %s has no provenance manifest (%s)", name, UNKNOWN_SOURCE)

    # -- counting --------------------------------------------------------------------------
    def batch_end(self, state: Any, logger: Any) -> None:
        samples, tokens = int(state.last_batch_samples), int(state.last_batch_tokens)
        self.batches += 1
        if len(self._names) == 1 or self._streams is None:
            record = self.records[self._names[0]]
            record["samples"] += samples
            record["tokens"] += tokens
            return
        shares = self._stream_counts(state, samples)
        token_shares = _split(tokens, shares)
        for name, count, token_count in zip(self._names, shares, token_shares):
            self.records[name]["samples"] += int(count)
            self.records[name]["tokens"] += int(token_count)

    def _stream_counts(self, state: Any, samples: int) -> np.ndarray:
        """How many of the batch's samples came from each stream."""
        dataset = self._streams
        end = int(state.timestamp.sample_in_epoch)
        positions = np.arange(end - samples, end) % max(dataset.num_samples, 1)
        ids = dataset.order(int(state.timestamp.epoch))[positions]
        owners = np.searchsorted(self._bounds, ids, side="right")
        return np.bincount(owners, minlength=len(self._names))

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": TRAINING_STATE_KIND,
            "version": STATE_VERSION,
            "batches": self.batches,
            "datasets": [{"name": name, **record} for name, record in self.records.items()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != TRAINING_STATE_KIND or state.get("version") != STATE_VERSION:
            from tessera.core.errors import CheckpointError

            raise CheckpointError(
                f"the checkpoint's provenance record has kind {state.get('kind')!r} version "
                f"{state.get('version')!r}; this Tessera reads {TRAINING_STATE_KIND!r} version "
                f"{STATE_VERSION}."
            )
        self.batches = int(state["batches"])
        restored = {
            entry["name"]: {k: v for k, v in entry.items() if k != "name"}
            for entry in state["datasets"]
        }
        for name, record in self.records.items():  # data sets found before the load
            restored.setdefault(name, record)
        self.records = restored

    def fit_end(self, state: Any, logger: Any) -> None:
        if state.rank != 0:
            return
        folder = Path(self.folder) if self.folder else None
        if folder is None and state.run_dir is not None:
            folder = Path(state.run_dir) / "final"
        if folder is None:
            log.warning("provenance: no run folder and no `folder` given; provenance not written")
            return
        from tessera.core.files import atomic_write, writing

        data = dumps(training_record(state.run_name, self.state_dict()))
        with writing("the provenance record", folder / MANIFEST_NAME):
            atomic_write(folder / MANIFEST_NAME, lambda file: file.write(data))


def _split(total: int, counts: np.ndarray) -> np.ndarray:
    """`total` shared in proportion to `counts`, in integers that add up (largest remainder)."""
    weight = int(counts.sum())
    if weight == 0:
        return np.zeros_like(counts)
    exact = counts * total / weight
    shares = np.floor(exact).astype(np.int64)
    for index in np.argsort(shares - exact)[: total - int(shares.sum())]:
        shares[index] += 1
    return shares
