"""EarlyStopper and ThresholdStopper in the real Trainer, on evaluation sequences the test
controls: the run stops exactly at the batch the rule says, and not before."""

from __future__ import annotations

import pytest
from cb_support import BATCH, BatchClock, Recorder, make_trainer, scripted_trainer

from tessera.callbacks.early_stopping import EarlyStopper, ThresholdStopper
from tessera.core.callback import Callback
from tessera.core.errors import ConfigError


def test_stops_at_the_evaluation_that_exhausts_patience(tmp_path):
    # Evaluations after batches 2, 4, 6, ...: the best (0.6) at batch 6, then three without a
    # gain (batches 8, 10, 12); the 0.9 that would come at batch 14 is never reached.
    values = [0.4, 0.5, 0.6, 0.6, 0.55, 0.59, 0.9]
    stopper = EarlyStopper(monitor="metrics/eval/accuracy", mode="max", patience=3)
    trainer = scripted_trainer(tmp_path, "40ba", values, eval_every=2, callbacks=[stopper])
    trainer.fit()
    state = trainer.state
    assert state.timestamp.batch == 12
    assert "early stopping: metrics/eval/accuracy has not improved on 0.6" in state.stop_reason
    assert (stopper.best, stopper.waits) == (0.6, 3)
    assert stopper.stopped_at == {"epoch": 0, "batch": 12, "sample": 12 * BATCH, "token": 0}


def test_a_gain_resets_the_count_and_a_gain_below_min_delta_is_none(tmp_path):
    # min mode: 1.0, 0.8 (gain), 0.79 (under min_delta), 0.5 (gain: the count restarts),
    # 0.5, 0.49 (under min_delta): the second miss after 0.5 is at batch 12.
    values = [1.0, 0.8, 0.79, 0.5, 0.5, 0.49, 0.1]
    stopper = EarlyStopper(monitor="eval/loss", mode="min", patience=2, min_delta=0.05)
    trainer = scripted_trainer(
        tmp_path, "40ba", values, eval_every=2, metric="loss", callbacks=[stopper]
    )
    trainer.fit()
    assert trainer.state.timestamp.batch == 12
    assert stopper.best == 0.5


def test_an_early_stop_is_checkpointed_and_rerunning_says_complete(tmp_path, caplog):
    """The same command again finds the run complete (issue 18): no retraining, no batch
    past the stop, the reason said."""
    values = [0.4, 0.5, 0.6, 0.6, 0.55, 0.59, 0.9]

    def run():
        stopper = EarlyStopper(monitor="metrics/eval/accuracy", mode="max", patience=3)
        trainer = scripted_trainer(
            tmp_path, "40ba", values, eval_every=2, callbacks=[stopper], save_interval="5ba"
        )
        trainer.fit()
        return trainer

    first = run()
    assert (tmp_path / "run" / "checkpoints" / "ep0-ba12.pt").exists()
    with caplog.at_level("WARNING"):
        again = run()
    assert again.resumed_from.name == "ep0-ba12.pt"
    assert again.state.timestamp.batch == 12 and again.state.stop_reason == first.state.stop_reason
    assert "run is already complete: stopped at epoch 0 batch 12 (early stopping:" in caplog.text


def test_patience_as_training_time(tmp_path):
    # The best (0.7) at batch 2; with patience 5 batches, batch 6 (4 since) is not enough and
    # batch 8 (6 since) is.
    stopper = EarlyStopper(monitor="eval/accuracy", mode="max", patience="5ba")
    trainer = scripted_trainer(tmp_path, "40ba", [0.7, 0.1], eval_every=2, callbacks=[stopper])
    trainer.fit()
    assert trainer.state.timestamp.batch == 8
    assert stopper.best_position == 2.0


def test_nan_never_counts_as_a_gain(tmp_path):
    stopper = EarlyStopper(monitor="eval/loss", mode="min", patience=2)
    values = [1.0, float("nan"), float("nan"), 0.1]
    trainer = scripted_trainer(
        tmp_path, "40ba", values, eval_every=2, metric="loss", callbacks=[stopper]
    )
    trainer.fit()
    assert trainer.state.timestamp.batch == 6 and stopper.best == 1.0


def test_a_resumed_run_keeps_counting_from_the_checkpoint(tmp_path):
    values = [0.5, 0.4, 0.4, 0.45, 0.9]  # best at batch 2; misses at 4, 6, then 8
    first = EarlyStopper(monitor="eval/accuracy", mode="max", patience=3)
    run = scripted_trainer(
        tmp_path, "6ba", values, eval_every=2, callbacks=[first], save_interval="6ba"
    )
    run.fit()
    assert (first.waits, run.state.stop_reason) == (2, None)

    resumed = EarlyStopper(monitor="eval/accuracy", mode="max", patience=3)
    run = scripted_trainer(
        tmp_path, "40ba", values, eval_every=2, callbacks=[resumed], save_interval="6ba"
    )
    run.fit()
    # One more miss was enough: the best and the two misses came from the checkpoint (a fresh
    # count would take 0.45 as its best and stop only at batch 14).
    assert run.state.timestamp.batch == 8
    assert (resumed.best, resumed.waits) == (0.5, 3)
    assert "early stopping" in run.state.stop_reason


class CountBatches(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def batch_end(self, state, logger) -> None:
        self.batches += 1


@pytest.mark.parametrize(
    ("monitor", "expected"),
    [
        ("metrics/eval/acuracy", r"computes no metric 'acuracy'; did you mean 'accuracy'"),
        ("metrics/evl/accuracy", r"no evaluation labelled 'evl'; did you mean 'eval'"),
    ],
)
def test_a_monitor_the_run_cannot_produce_is_refused_before_training(tmp_path, monitor, expected):
    for stopper in (
        EarlyStopper(monitor=monitor, mode="max"),
        ThresholdStopper(monitor=monitor, threshold=0.5),
    ):
        counter = CountBatches()
        with pytest.raises(ConfigError, match=expected):
            make_trainer(tmp_path, "10ba", callbacks=[stopper, counter]).fit()
        assert counter.batches == 0


def test_a_run_without_evaluation_data_is_refused(tmp_path):
    stopper = EarlyStopper(monitor="eval/accuracy")
    with pytest.raises(
        ConfigError, match=r"callbacks\.early_stopping: monitors eval/accuracy, but the run"
    ):
        make_trainer(tmp_path, "10ba", callbacks=[stopper], evaluate=False).fit()


def test_threshold_stops_at_the_first_crossing_and_records_when(tmp_path):
    values = [0.3, 0.55, 0.79, 0.81, 0.95]  # evaluations after batches 3, 6, 9, 12, ...
    stopper = ThresholdStopper(monitor="metrics/eval/accuracy", threshold=0.8, mode="max")
    clock, recorder = BatchClock(), Recorder()
    trainer = scripted_trainer(
        tmp_path, "40ba", values, eval_every=3, callbacks=[clock, stopper], loggers=[recorder]
    )
    trainer.fit()
    assert trainer.state.timestamp.batch == 12
    assert "threshold reached: metrics/eval/accuracy = 0.81" in trainer.state.stop_reason
    reached = stopper.reached_at
    assert {key: reached[key] for key in ("epoch", "batch", "sample", "token", "value")} == {
        "epoch": 0,
        "batch": 12,
        "sample": 12 * BATCH,
        "token": 0,
        "value": 0.81,
    }
    # Wall-clock seconds from the start of the run to the evaluation that crossed.
    _, crossed_at = clock.evaluations[3]
    assert reached["seconds"] == pytest.approx(crossed_at, abs=0.05)
    logged = {name: value for step, m in recorder.records for name, value in m.items()}
    assert {name: logged[f"threshold/{name}"] for name in reached} == pytest.approx(reached)
    assert recorder.values("threshold/batch") == {12: 12.0}


def test_threshold_without_stop_records_once_and_the_run_goes_on(tmp_path):
    stopper = ThresholdStopper(monitor="eval/loss", threshold=0.5, mode="min", stop=False)
    recorder = Recorder()
    trainer = scripted_trainer(
        tmp_path,
        "12ba",
        [0.9, 0.4, 0.3],
        eval_every=3,
        metric="loss",
        callbacks=[stopper],
        loggers=[recorder],
    )
    trainer.fit()
    assert trainer.state.stop_reason is None and trainer.state.timestamp.batch == 12
    assert stopper.reached_at["batch"] == 6
    assert recorder.values("threshold/batch") == {6: 6.0}


def test_threshold_seconds_count_across_resumes(tmp_path):
    stopper = ThresholdStopper(monitor="eval/accuracy", threshold=0.9)
    stopper.load_state_dict({"reached_at": None, "seconds": 100.0})  # an earlier session's
    clock = BatchClock()
    trainer = scripted_trainer(
        tmp_path, "6ba", [0.1, 0.95], eval_every=3, callbacks=[clock, stopper]
    )
    trainer.fit()
    _, crossed_at = clock.evaluations[1]
    assert stopper.reached_at["seconds"] == pytest.approx(100.0 + crossed_at, abs=0.05)
