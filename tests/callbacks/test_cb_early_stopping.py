"""EarlyStopper and ThresholdStopper decide on evaluation results fired through the Engine."""

from __future__ import annotations

import pytest
from cb_loop import Loop, Recorder, make_state

from tessera.callbacks.early_stopping import EarlyStopper, ThresholdStopper
from tessera.core.errors import ConfigError


def scripted(values):
    """Eval results that follow `values` (then repeat the last one)."""
    return lambda index: {"eval": {"accuracy": values[min(index, len(values) - 1)]}}


def test_stops_after_exactly_patience_non_improving_evaluations():
    # Evaluations at batches 2, 4, 6, ...: best 0.6 at the 3rd, then 3 evals without a gain.
    values = [0.4, 0.5, 0.6, 0.6, 0.55, 0.59, 0.9]
    stopper = EarlyStopper("metrics/eval/accuracy", mode="max", patience=3)
    state = make_state("40ba")
    loop = Loop(state, callbacks=[stopper], eval_every=2, scripted_eval=scripted(values))
    loop.fit()
    assert loop.evaluations == 6  # stopped at the 3rd non-improving one, before the 0.9
    assert state.timestamp.batch == 12
    assert state.stop_reason is not None and "early stopping" in state.stop_reason
    assert stopper.best == 0.6 and stopper.waits == 3
    assert stopper.stopped_at == {"epoch": 0, "batch": 12, "sample": 192, "token": 0}


def test_improvement_resets_the_count_and_min_delta_counts_small_gains_as_none():
    # min mode on a loss: 1.0 -> 0.8 (gain) -> 0.79 (below min_delta) -> 0.5 (gain) -> flat.
    values = [1.0, 0.8, 0.79, 0.5, 0.5, 0.49]
    stopper = EarlyStopper("eval/loss", mode="min", patience=2, min_delta=0.05)
    state = make_state("40ba")
    loop = Loop(state, callbacks=[stopper], eval_every=2, scripted_eval=scripted_loss(values))
    loop.fit()
    assert loop.evaluations == 6
    assert stopper.best == 0.5


def scripted_loss(values):
    return lambda index: {"eval": {"loss": values[min(index, len(values) - 1)]}}


def test_patience_as_training_time():
    # Eval every 2 batches; patience 5 batches since the best (batch 2): stop at batch 8.
    stopper = EarlyStopper("eval/accuracy", mode="max", patience="5ba")
    state = make_state("40ba")
    loop = Loop(state, callbacks=[stopper], eval_every=2, scripted_eval=scripted([0.7, 0.1]))
    loop.fit()
    assert state.timestamp.batch == 8
    assert stopper.best_position == 2.0


def test_nan_never_counts_as_improvement():
    stopper = EarlyStopper("eval/loss", mode="min", patience=2)
    state = make_state("40ba")
    values = [1.0, float("nan"), float("nan"), 0.1]
    loop = Loop(state, callbacks=[stopper], eval_every=2, scripted_eval=scripted_loss(values))
    loop.fit()
    assert loop.evaluations == 3 and stopper.best == 1.0


def test_checkpointed_state_continues_the_count():
    first = EarlyStopper("eval/accuracy", mode="max", patience=3)
    state = make_state("6ba")
    Loop(state, callbacks=[first], eval_every=2, scripted_eval=scripted([0.5, 0.4, 0.4])).fit()
    assert first.waits == 2 and state.stop_reason is None
    saved = first.state_dict()

    resumed = EarlyStopper("eval/accuracy", mode="max", patience=3)
    resumed.load_state_dict(saved)
    state = make_state("40ba")
    loop = Loop(state, callbacks=[resumed], eval_every=2, scripted_eval=scripted([0.45]))
    loop.fit()
    assert loop.evaluations == 1  # one more non-improving eval was enough
    assert state.stop_reason is not None and resumed.best == 0.5


@pytest.mark.parametrize(
    ("monitor", "expected"),
    [
        ("metrics/eval/acuracy", r"computes no metric 'acuracy'; did you mean 'accuracy'"),
        ("metrics/evl/accuracy", r"no evaluation labelled 'evl'; did you mean 'eval'"),
    ],
)
def test_a_monitor_the_run_cannot_produce_is_refused_before_training(monitor, expected):
    state = make_state("10ba")
    for stopper in (EarlyStopper(monitor, mode="max"), ThresholdStopper(monitor, 0.5)):
        with pytest.raises(ConfigError, match=expected):
            Loop(state, callbacks=[stopper], eval_every=2)  # INIT checks
    assert state.timestamp.batch == 0


def test_no_evaluation_data_is_refused():
    state = make_state("10ba")
    state.eval_dataloaders = {}
    with pytest.raises(
        ConfigError, match=r"callbacks\.early_stopping: monitors eval/accuracy, but the run"
    ):
        Loop(state, callbacks=[EarlyStopper("eval/accuracy")])


def test_results_without_the_metric_are_a_clear_error():
    # An evaluation that produced other metrics than declared: caught when it happens.
    stopper = EarlyStopper("metrics/eval/accuracy", mode="max")
    state = make_state("10ba")
    loop = Loop(state, callbacks=[stopper], eval_every=2, scripted_eval=scripted_loss([1.0]))
    with pytest.raises(ConfigError, match="has no metric 'accuracy'"):
        loop.fit()


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"monitor": "accuracy"}, "monitor"),
        ({"monitor": "eval/loss", "mode": "biggest"}, "mode"),
        ({"monitor": "eval/loss", "patience": 0}, "patience"),
        ({"monitor": "eval/loss", "patience": "3 evals"}, "patience"),
        ({"monitor": "eval/loss", "min_delta": -1}, "min_delta"),
    ],
)
def test_bad_arguments_name_the_field(arguments, field):
    with pytest.raises(ConfigError, match=f"^{field}:"):
        EarlyStopper(**arguments)


def test_threshold_fires_at_first_crossing_and_records_when():
    values = [0.3, 0.55, 0.79, 0.81, 0.95]
    stopper = ThresholdStopper("metrics/eval/accuracy", threshold=0.8, mode="max")
    recorder = Recorder()
    state = make_state("40ba")
    loop = Loop(
        state, callbacks=[stopper], loggers=[recorder], eval_every=3, scripted_eval=scripted(values)
    )
    loop.fit()
    assert loop.evaluations == 4 and state.timestamp.batch == 12
    assert stopper.reached_at is not None
    assert stopper.reached_at["batch"] == 12 and stopper.reached_at["value"] == 0.81
    assert stopper.reached_at["seconds"] > 0
    assert "threshold reached" in (state.stop_reason or "")
    assert recorder.values("threshold/batch") == {12: 12.0}
    assert recorder.values("threshold/seconds")[12] == stopper.reached_at["seconds"]


def test_threshold_without_stop_records_once_and_run_continues():
    stopper = ThresholdStopper("eval/loss", threshold=0.5, mode="min", stop=False)
    state = make_state("12ba")
    loop = Loop(
        state, callbacks=[stopper], eval_every=3, scripted_eval=scripted_loss([0.9, 0.4, 0.3])
    )
    loop.fit()
    assert state.stop_reason is None and state.timestamp.batch == 12
    assert stopper.reached_at is not None and stopper.reached_at["batch"] == 6


def test_threshold_seconds_count_across_resumes():
    stopper = ThresholdStopper("eval/accuracy", threshold=0.9)
    stopper.load_state_dict({"reached_at": None, "seconds": 100.0})
    state = make_state("6ba")
    Loop(state, callbacks=[stopper], eval_every=3, scripted_eval=scripted([0.1, 0.95])).fit()
    assert stopper.reached_at is not None
    assert 100.0 < stopper.reached_at["seconds"] < 160.0
