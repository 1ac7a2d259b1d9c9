"""Callbacks and loggers named as in a recipe, inside the real Trainer: each reports at its own
default interval into the run folder, and a resumed run carries their state on."""

from __future__ import annotations

import pytest
from cb_support import BatchClock, LossLog, Pixels, make_trainer

from tessera.callbacks import build_callbacks
from tessera.loggers import build_loggers
from tessera.loggers.jsonl import read_jsonl

DEFAULT_MONITORS = {"speed_monitor": None, "lr_monitor": None, "memory_monitor": None}


def test_named_components_report_at_their_own_default_interval(tmp_path, capsys):
    run = tmp_path / "run"
    losses = LossLog()
    trainer = make_trainer(
        tmp_path,
        "20ba",
        model=Pixels(loss_fn=losses),
        callbacks=build_callbacks(DEFAULT_MONITORS),
        loggers=build_loggers({"progress": {"mode": "lines"}, "jsonl": None}, run),
        eval_interval="10ba",
    )
    trainer.fit()

    records = list(read_jsonl(run / "metrics.jsonl"))

    def steps_with(name):
        return [r["step"] for r in records if name in r]

    for name in ("loss/train", "throughput/samples_per_sec", "lr/group0", "memory/rss_gib"):
        assert steps_with(name) == [10, 20], name  # the one default: every 10 batches
    assert [r["loss/train"] for r in records if "loss/train" in r] == [
        losses.losses[9],
        losses.losses[19],
    ]
    out = capsys.readouterr().out
    assert "[batch 10/20 " in out and "[batch 20/20 " in out and "[batch 5/20 " not in out
    assert f"loss {losses.losses[19]:.4f}" in out


def test_a_resumed_run_carries_the_training_clock_on(tmp_path):
    def run(max_duration):
        clock, (speed,) = BatchClock(), build_callbacks({"speed_monitor": {"log_interval": 2}})
        make_trainer(
            tmp_path,
            max_duration,
            callbacks=[clock, speed],
            loggers=build_loggers({"jsonl": None}, tmp_path / "run"),
            eval_interval="4ba",
            save_interval="4ba",
        ).fit()
        return clock, speed

    first_clock, first = run("4ba")
    assert first.train_seconds == pytest.approx(training_seconds(first_clock), abs=0.02)
    second_clock, second = run("8ba")
    # The second session starts from the first one's training time, restored from the
    # checkpoint, and adds its own.
    expected = first.train_seconds + training_seconds(second_clock)
    assert second.train_seconds == pytest.approx(expected, abs=0.02)
    records = list(read_jsonl(tmp_path / "run" / "metrics.jsonl"))
    assert [r["resumed_at"] for r in records if "resumed_at" in r] == [4]
    logged = {r["step"]: r["time/train_seconds"] for r in records if "time/train_seconds" in r}
    assert sorted(logged) == [2, 4, 6, 8]
    assert logged[6] > logged[4] == pytest.approx(first.train_seconds, abs=1e-9)


def training_seconds(clock: BatchClock) -> float:
    """The batches' time on the clock, less the evaluations that ran between batches."""
    inside = [end - start for start, end in clock.evaluations if end <= clock.ends[-1]]
    return sum(clock.durations) - sum(inside)
