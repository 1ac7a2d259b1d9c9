"""Vision data sets registered for recipes."""

from __future__ import annotations

from pydantic import Field

from tessera.core.component import ComponentConfig
from tessera.core.errors import DataError
from tessera.core.registry import builder
from tessera.data.fashion_mnist import CLASSES, MEAN, STD, FashionMNIST, collate_ready_batch
from tessera.data.registry import DataContext, DataLoaders, per_rank_batch_size
from tessera.data.sampler import make_dataloader


class FashionMNISTConfig(ComponentConfig):
    """Fashion-MNIST read from its IDX files; test split used for evaluation."""

    name: str = "fashion_mnist"
    path: str | None = Field(None, description="folder with the four IDX(.gz) files")
    batch_size: int = Field(128, ge=1, description="global training batch size")
    eval_batch_size: int = Field(1000, ge=1, description="evaluation batch size per process")
    num_workers: int = Field(0, ge=0, description="dataloader worker processes")
    shuffle: bool = True
    drop_last: bool = False
    train_subset: int | None = Field(None, ge=1, description="train on the first N samples only")
    eval_subset: int | None = Field(None, ge=1, description="evaluate on the first N samples only")


# What the model sees: x = (pixels * scale - mean) / std, each of mean/std per channel.
INPUTS = {
    "pixels": "uint8, shape (channels, 28, 28) as in the IDX files",
    "scale": 1 / 255,
    "mean": [MEAN],
    "std": [STD],
    "classes": list(CLASSES),
}


@builder(FashionMNISTConfig)
def build_fashion_mnist(config: FashionMNISTConfig, context: DataContext) -> DataLoaders:
    try:
        train = FashionMNIST("train", config.path)
    except DataError as error:  # the recipe's field, when the folder came from it
        raise (DataError(f"data.path: {error}") if config.path is not None else error) from None
    if config.train_subset is not None:
        train.images = train.images[: config.train_subset]
        train.labels = train.labels[: config.train_subset]
    test = FashionMNIST("test", config.path)
    if config.eval_subset is not None:
        test.images = test.images[: config.eval_subset]
        test.labels = test.labels[: config.eval_subset]
    common = {
        "rank": context.rank,
        "world_size": context.world_size,
        "collate_fn": collate_ready_batch,
    }
    return DataLoaders(
        train=make_dataloader(
            train,
            per_rank_batch_size(config.batch_size, context),
            shuffle=config.shuffle,
            seed=context.seed,
            num_workers=config.num_workers,
            drop_last=config.drop_last,
            **common,
        ),
        eval={
            "eval": make_dataloader(
                test,
                config.eval_batch_size,
                shuffle=False,
                num_workers=config.num_workers,
                **common,
            )
        },
        inputs=INPUTS,
    )
