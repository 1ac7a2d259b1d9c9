"""The README's plain-PyTorch snippet, run as written on the final/ folder of its recipe: fed raw
IDX pixels, the model sees exactly the inputs training gave it and scores what `tessera eval`
scores."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from tessera.cli.main import main
from tessera.data.fashion_mnist import FashionMNIST, read_idx

README = Path(__file__).resolve().parents[2] / "README.md"
RECIPE = README.parent / "recipes" / "fashion-mnist-resnet.yaml"
SAMPLES = 96


def snippet() -> str:
    blocks = re.findall(r"```python\n(import json\n.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1, "the README has one plain-PyTorch snippet"
    assert "runs/fashion-mnist-resnet/final" in blocks[0]
    return blocks[0]


def test_plain_pytorch_snippet_gets_the_accuracy_tessera_eval_reports(fashion_mnist_dir, capsys):
    subset = [f"data.train_subset={SAMPLES * 2}", f"data.eval_subset={SAMPLES}"]
    short = ["max_duration=3ba", "data.batch_size=64", "save_interval=3ba", "eval_interval=3ba"]
    data = [f"data.path={fashion_mnist_dir}", *subset, *short]
    assert main(["train", str(RECIPE), *data]) == 0
    capsys.readouterr()
    data_path = f"data.path={fashion_mnist_dir}"
    assert main(["eval", "runs/fashion-mnist-resnet", data_path, *subset]) == 0
    reported = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    accuracy = reported["eval"]["eval"]["accuracy"]

    scope: dict = {}
    exec(compile(snippet(), "README.md", "exec"), scope)
    pixels = torch.from_numpy(read_idx(fashion_mnist_dir / "t10k-images-idx3-ubyte.gz").copy())
    pixels = pixels[:SAMPLES].unsqueeze(1)
    labels = read_idx(fashion_mnist_dir / "t10k-labels-idx1-ubyte.gz")[:SAMPLES].tolist()
    names = scope["predict"](pixels)
    classes = scope["inputs"]["classes"]
    own = sum(classes[label] == name for label, name in zip(labels, names)) / SAMPLES
    assert abs(own - accuracy) < 1e-6, (own, accuracy)

    # The snippet's preparation is the data pipeline's, number for number.
    prepared = (pixels.float() * scope["inputs"]["scale"] - scope["mean"]) / scope["std"]
    trained_on = FashionMNIST("test", fashion_mnist_dir).images[:SAMPLES]
    torch.testing.assert_close(prepared, trained_on)
