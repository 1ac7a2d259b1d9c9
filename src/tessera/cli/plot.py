"""`tessera plot RUN --out curves.png`: a run's curves (loss, evaluation, throughput, learning
rate) from its metrics.jsonl, one panel each; needs `pip install 'tessera-train[plot]'`."""

from __future__ import annotations

import argparse

# Panel title -> metric-name prefixes drawn in it (every key that starts with one).
PANELS = {
    "training loss": ("loss/",),
    "evaluation": ("metrics/",),
    "throughput (per second)": ("throughput/samples_per_sec", "throughput/tokens_per_sec"),
    "MFU": ("throughput/mfu",),
    "learning rate": ("lr/",),
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="plot a run's curves to a PNG",
        description="Plot training loss, evaluation metrics, throughput and learning rate of a "
        "run (its metrics.jsonl) against the batch, one panel each, into a PNG.",
    )
    parser.add_argument("run", help="run folder (runs/NAME) or its metrics.jsonl")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tessera.core.errors import UserError
    from tessera.estimate.runs import pyplot, read_records, save_figure, series

    records = read_records(args.run)
    keys = sorted({key for record in records for key in record} - {"step", "time"})
    panels = {
        title: [k for k in keys if k.startswith(prefixes)] for title, prefixes in PANELS.items()
    }
    panels = {title: names for title, names in panels.items() if names}
    if not panels:
        raise UserError(
            f"{args.run}: its metrics.jsonl holds no loss, evaluation, throughput or lr values "
            "to plot (did the run log any batches?)"
        )
    plt = pyplot()
    figure, axes = plt.subplots(
        len(panels),
        1,
        figsize=(8, 2.6 * len(panels)),
        squeeze=False,
        sharex=True,
        layout="constrained",
    )
    for axis, (title, names) in zip(axes[:, 0], panels.items()):
        for name in names:
            points = series(records, name)
            if points:
                axis.plot([p[0] for p in points], [p[1] for p in points], ".-", label=name)
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    axes[-1, 0].set_xlabel("batch")
    figure.suptitle(args.run)
    try:
        out = save_figure(figure, args.out)
    finally:
        plt.close(figure)
    print(f"wrote {out} ({', '.join(panels)})")
    return 0
