"""The training and evaluation DataLoaders of a text data set, built one way for every kind
(plain text, chat, preference pairs): the per-rank batch, a refusal when the training set is
smaller than one global batch, and the shared loader settings."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from tessera.core.errors import ConfigError
from tessera.data.registry import DataContext, DataLoaders, per_rank_batch_size
from tessera.data.sampler import make_dataloader


def text_loaders(
    config: Any, context: DataContext, train: Dataset, val: Dataset | None, items: str, fix: str
) -> DataLoaders:
    """Loaders for `train` (and `val` as the `eval` set). `items` names what a row is ("training
    pairs") and `fix` what to change, for the error when `batch_size` exceeds the data."""
    batch = per_rank_batch_size(config.batch_size, context)
    if config.drop_last and len(train) < batch * context.world_size:  # type: ignore[arg-type]
        raise ConfigError(
            f"data.batch_size: {config.batch_size} is more than the {len(train)} {items}"  # type: ignore[arg-type]
            + (f"; {fix}." if fix else ".")
        )
    common = {"rank": context.rank, "world_size": context.world_size}
    loaders = DataLoaders(
        train=make_dataloader(
            train,
            batch,
            shuffle=config.shuffle,
            seed=context.seed,
            num_workers=config.num_workers,
            drop_last=config.drop_last,
            **common,
        )
    )
    if val is not None:
        loaders.eval["eval"] = make_dataloader(
            val, config.eval_batch_size, shuffle=False, num_workers=config.num_workers, **common
        )
    return loaders
