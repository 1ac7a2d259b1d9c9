"""Fashion-MNIST from its IDX files (gzipped or not), with no torchvision needed.

Found through the data root (`tessera.data.root`): the folder the recipe gives (`data.path`),
else `ROOT/fashion-mnist` (`tessera data download fashion-mnist` puts it there), else Debian's
`/usr/share/datasets/fashion-mnist` (package `dataset-fashion-mnist`).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from tessera.core.errors import DataError
from tessera.data.root import find_folder, present

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MEAN, STD = 0.2860, 0.3530
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or plain, into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read IDX file {path}: {error}") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[data[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - offset != expected:
        raise DataError(
            f"{path} is truncated or corrupt: its header promises {expected} bytes of data, "
            f"the file holds {len(data) - offset}"
        )
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)


def find_fashion_mnist(path: str | Path | None = None) -> Path:
    """The folder holding all four Fashion-MNIST files, or a DataError naming where."""
    return find_folder("fashion-mnist", path)


class FashionMNIST(Dataset):
    """Fashion-MNIST images as normalized float tensors [1, 28, 28] with integer labels.

    The whole split lives in memory (47 MB for train); `__getitems__` returns a ready batch
    `(images, labels)` so loading costs one indexing operation per batch.
    """

    def __init__(self, split: str = "train", path: str | Path | None = None) -> None:
        if split not in FILES:
            raise DataError(
                f"data.split: {split!r} is not a Fashion-MNIST split; use 'train' or 'test'"
            )
        folder = find_fashion_mnist(path)
        images_file, labels_file = (present(folder, f"{stem}.gz") for stem in FILES[split])
        images = read_idx(images_file)  # type: ignore[arg-type]
        labels = read_idx(labels_file)  # type: ignore[arg-type]
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"{images_file} has {images.shape[0]} images but {labels_file} has "
                f"{labels.shape[0]} labels"
            )
        pixels = torch.from_numpy(images.copy()).float().div_(255.0)
        self.images = pixels.sub_(MEAN).div_(STD).unsqueeze(1)
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.folder = folder

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices)
        return self.images[index], self.labels[index]


def collate_ready_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The batch `__getitems__` already assembled, passed through unchanged."""
    return batch
