"""SpeedMonitor: throughput agrees with the time batches really took; MFU is FLOPs/time/peak."""

from __future__ import annotations

import time

import pytest
import torch
from cb_loop import Loop, Recorder, TinyClassifier, make_state

from tessera.callbacks.peak_flops import PEAK_FLOPS, gpu_key, math_mode, peak_flops_per_second
from tessera.callbacks.speed_monitor import SpeedMonitor
from tessera.core.callback import Callback
from tessera.core.errors import ConfigError
from tessera.core.precision import Precision

SLEEP = 0.04
BATCH = 16


class BatchClock(Callback):
    """Measures, independently, the seconds from one BATCH_END to the next."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._last = None

    def fit_start(self, state, logger):
        self._last = time.perf_counter()

    def batch_end(self, state, logger):
        now = time.perf_counter()
        self.durations.append(now - self._last)
        self._last = now


def test_samples_per_second_matches_a_controlled_sleep():
    clock = BatchClock()
    monitor = SpeedMonitor(window=4, log_interval=4)
    recorder = Recorder()
    state = make_state("8ba", batch_size=BATCH)
    # The clock runs just before the monitor at each event: both time the same batches.
    Loop(state, callbacks=[clock, monitor], loggers=[recorder], batch_sleep=SLEEP).fit()

    rates = recorder.values("throughput/samples_per_sec")
    assert sorted(rates) == [4, 8]
    window_seconds = sum(clock.durations[4:8])  # the window: the last 4 batches
    assert 4 * BATCH / rates[8] == pytest.approx(window_seconds, abs=0.02)
    assert rates[8] < BATCH / SLEEP  # each batch took at least the sleep
    assert recorder.values("throughput/batches_per_sec")[8] == pytest.approx(
        rates[8] / BATCH, rel=1e-9
    )
    assert "throughput/tokens_per_sec" not in recorder.records[-1][1]
    assert "throughput/mfu" not in recorder.records[-1][1]  # CPU, no peak given
    train_seconds = recorder.values("time/train_seconds")[8]
    assert train_seconds == pytest.approx(sum(clock.durations), abs=0.02)


class EvalClock(Callback):
    """Measures, independently, the time from FIT_START to each BATCH_END and each evaluation."""

    def __init__(self) -> None:
        self.start = 0.0
        self.batch_ends: list[float] = []
        self.evaluations: list[float] = []
        self._eval_start = 0.0

    def fit_start(self, state, logger):
        self.start = time.perf_counter()

    def batch_end(self, state, logger):
        self.batch_ends.append(time.perf_counter() - self.start)

    def eval_start(self, state, logger):
        self._eval_start = time.perf_counter()

    def eval_end(self, state, logger):
        self.evaluations.append(time.perf_counter() - self._eval_start)


def test_evaluation_time_is_not_training_time():
    monitor = SpeedMonitor(window=4, log_interval=4)
    clock = EvalClock()
    recorder = Recorder()
    state = make_state("4ba", batch_size=BATCH)
    loop = Loop(
        state,
        callbacks=[clock, monitor],
        loggers=[recorder],
        eval_every=2,
        eval_sleep=0.5,
        batch_sleep=SLEEP,
        scripted_eval=lambda i: {"eval": {"accuracy": 0.5}},
    )
    loop.fit()
    # Evaluations ran after batches 2 and 4; only the first lies inside the timed batches.
    assert len(clock.evaluations) == 2 and min(clock.evaluations) >= 0.5
    wall_to_batch_4 = clock.batch_ends[3]
    logged = recorder.values("time/train_seconds")[4]
    assert logged == pytest.approx(wall_to_batch_4 - clock.evaluations[0], abs=0.05)
    assert monitor.eval_seconds == pytest.approx(sum(clock.evaluations), abs=0.05)
    rate = recorder.values("throughput/samples_per_sec")[4]
    assert rate == pytest.approx(4 * BATCH / logged, rel=1e-6)


def test_mfu_is_flops_over_time_over_peak():
    flops_per_sample = 3.0e9
    peak = 1.0e12
    model = TinyClassifier(flops_per_sample=flops_per_sample, tokens_per_sample=28)
    monitor = SpeedMonitor(window=3, log_interval=3, peak_flops_per_second=peak)
    recorder = Recorder()
    state = make_state("6ba", batch_size=BATCH, model=model)
    Loop(state, callbacks=[monitor], loggers=[recorder], batch_sleep=0.02).fit()
    metrics = recorder.records[-1][1]
    batches_per_second = metrics["throughput/batches_per_sec"]
    flops = flops_per_sample * BATCH * batches_per_second
    assert metrics["throughput/device/flops_per_sec"] == pytest.approx(flops, rel=1e-9)
    assert metrics["throughput/mfu"] == pytest.approx(flops / peak, rel=1e-9)
    assert 0 < metrics["throughput/mfu"] < flops_per_sample * BATCH / 0.02 / peak
    assert metrics["throughput/tokens_per_sec"] == pytest.approx(
        28 * metrics["throughput/samples_per_sec"], rel=1e-9
    )


def test_device_rates_divide_the_all_rank_counts_by_world_size():
    # The trainer counts a batch's samples over all ranks; the monitor reports them as they
    # are and divides by the world size for one device.
    monitor = SpeedMonitor(window=2, log_interval=2)
    state = make_state("2ba", batch_size=BATCH)
    state.world_size = 4
    Loop(state, callbacks=[monitor]).fit()
    latest = monitor.latest
    assert latest["throughput/samples_per_sec"] == pytest.approx(
        2 * BATCH / monitor.train_seconds, rel=1e-6
    )
    assert latest["throughput/device/samples_per_sec"] == pytest.approx(
        latest["throughput/samples_per_sec"] / 4
    )


def test_checkpointed_clock_continues():
    monitor = SpeedMonitor()
    monitor.load_state_dict({"train_seconds": 50.0, "eval_seconds": 5.0})
    state = make_state("2ba")
    Loop(state, callbacks=[monitor]).fit()
    assert 50.0 < monitor.state_dict()["train_seconds"] < 80.0
    assert monitor.state_dict()["eval_seconds"] == 5.0


def test_peak_table_lookup():
    assert gpu_key("NVIDIA H100 80GB HBM3") == "h100-sxm"
    assert gpu_key("NVIDIA H100 PCIe") == "h100-pcie"
    assert gpu_key("NVIDIA H100 NVL") == "h100-nvl"
    assert gpu_key("NVIDIA H200") == "h200-sxm"
    assert gpu_key("NVIDIA A100-SXM4-80GB") == "a100"
    assert gpu_key("NVIDIA L4") == "l4"
    assert gpu_key("NVIDIA L40S") == "l40s"
    assert gpu_key("NVIDIA GeForce GTX 1080") is None
    assert PEAK_FLOPS["h100-sxm"]["bf16"] == 989e12
    assert math_mode(Precision.AMP_BF16) == "bf16"
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        assert math_mode(Precision.FP32) == "tf32"
        torch.set_float32_matmul_precision("highest")
        assert math_mode(Precision.FP32) == "fp32"
    finally:
        torch.set_float32_matmul_precision(previous)
    assert peak_flops_per_second(torch.device("cpu"), Precision.FP32) is None


@pytest.mark.parametrize(
    "arguments", [{"window": 0}, {"peak_flops_per_second": -1}, {"log_interval": "ten"}]
)
def test_bad_arguments(arguments):
    with pytest.raises(ConfigError):
        SpeedMonitor(**arguments)
