"""The GPU part of the method measurements, sized for a few minutes of one H100/H200.

    python benchmarks/gpu_algorithms.py --part ladder --out DIR     # 2:4 sparsity + ladder
    python benchmarks/gpu_algorithms.py --part ablation --out DIR   # one method at a time

The vision task is the CPU task at the scale a GPU makes sensible: the full Fashion-MNIST
(60k/10k), a wider ResNet (width 32), target 93.0% test accuracy, evaluation every 117
batches (half an epoch).
Fashion-MNIST is read from `--data` (a copy of ../shared/data/fashion-mnist carried along).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ABLATION = [
    "channels_last",
    "label_smoothing",
    "ema",
    "progressive_resizing",
    "blurpool",
    "selective_backprop",
    "colout",
    "fused_optimizer",
    "swa",
    "cutout",
    "stochastic_depth",
    "squeeze_excite",
    "mixup",
    "sam",
    "ghost_batchnorm",
    "layer_freezing",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", choices=["ladder", "ablation"], required=True)
    parser.add_argument("--out", default=".")
    parser.add_argument("--data", default=".gpu_data/fashion-mnist")
    parser.add_argument("--methods", nargs="*", default=ABLATION)
    args = parser.parse_args()
    out = Path(args.out)
    common = [
        sys.executable,
        str(HERE / "time_to_accuracy.py"),
        "run",
        "--device",
        "cuda",
        "--target",
        "0.93",
        "--eval-interval",
        "0.5ep",
        "--set",
        "model.width=32",
        f"data.path={Path(args.data).resolve()}",
    ]
    if args.part == "ladder":
        subprocess.run(
            [
                sys.executable,
                str(HERE / "sparsity_2to4.py"),
                "--output",
                str(out / "sparsity_2to4.json"),
            ],
            check=False,
        )
        subprocess.run(
            [*common, "--seeds", "0", "1", "--output", str(out / "time_to_accuracy_gpu.json")],
            check=True,
        )
    else:
        subprocess.run(
            [
                *common,
                "--recipes",
                "--ablation",
                *args.methods,
                "--seeds",
                "0",
                "--output",
                str(out / "time_to_accuracy_gpu_ablation.json"),
            ],
            check=True,
        )


if __name__ == "__main__":
    main()
