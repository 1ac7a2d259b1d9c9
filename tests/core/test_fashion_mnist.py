import gzip

import numpy as np
import pytest

from tessera.core.errors import DataError
from tessera.data.fashion_mnist import MEAN, STD, FashionMNIST, read_idx


def test_reads_real_idx_files(fashion_mnist_dir):
    images = read_idx(fashion_mnist_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(fashion_mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    assert np.bincount(labels).tolist() == [1000] * 10  # the test split is balanced


def test_dataset_normalises_and_batches(fashion_mnist_dir):
    dataset = FashionMNIST("test", fashion_mnist_dir)
    image, label = dataset[0]
    assert image.shape == (1, 28, 28) and 0 <= int(label) < 10
    raw = read_idx(fashion_mnist_dir / "t10k-images-idx3-ubyte.gz")[0]
    assert np.allclose(image[0].numpy(), (raw / 255.0 - MEAN) / STD, atol=1e-6)
    images, labels = dataset.__getitems__([3, 1, 2])
    assert images.shape == (3, 1, 28, 28) and labels.tolist() == dataset.labels[[3, 1, 2]].tolist()


def test_truncated_file_is_named(tmp_path, fashion_mnist_dir):
    with gzip.open(fashion_mnist_dir / "t10k-labels-idx1-ubyte.gz") as file:
        data = file.read()
    broken = tmp_path / "t10k-labels-idx1-ubyte.gz"
    broken.write_bytes(gzip.compress(data[:500]))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz is truncated"):
        read_idx(broken)


def test_missing_folder_lists_where_it_looked(tmp_path):
    with pytest.raises(DataError, match=f"looked in {tmp_path}"):
        FashionMNIST("train", tmp_path)
    with pytest.raises(DataError, match="'train' or 'test'"):
        FashionMNIST("validation", tmp_path)
