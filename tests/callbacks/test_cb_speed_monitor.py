"""SpeedMonitor in the real Trainer: the rates it logs are the samples, tokens and FLOPs of the
batches over the time an independent clock measured around them, evaluation left out."""

from __future__ import annotations

import pytest
import torch
from cb_support import BATCH, BatchClock, Pixels, Recorder, Sleep, make_trainer

from tessera.callbacks.peak_flops import PEAK_FLOPS, gpu_key, math_mode, peak_flops_per_second
from tessera.callbacks.speed_monitor import SpeedMonitor
from tessera.core.precision import Precision

SLEEP = 0.03  # a controlled slow step, so a batch lasts long enough to time well


def test_samples_per_second_is_the_samples_counted_over_the_time_measured(tmp_path):
    clock, recorder = BatchClock(), Recorder()
    monitor = SpeedMonitor(window=4, log_interval=4)
    # The clock's BATCH_END runs just before the monitor's: both time the same batches.
    callbacks = [clock, monitor, Sleep(batch=SLEEP)]
    make_trainer(tmp_path, "8ba", callbacks=callbacks, loggers=[recorder], evaluate=False).fit()

    rates = recorder.values("throughput/samples_per_sec")
    assert sorted(rates) == [4, 8]
    for step in (4, 8):
        window = slice(step - 4, step)  # the last 4 batches
        samples, seconds = sum(clock.samples[window]), sum(clock.durations[window])
        assert samples == 4 * BATCH
        assert samples / rates[step] == pytest.approx(seconds, abs=0.01)
        batches_per_second = recorder.values("throughput/batches_per_sec")[step]
        assert 4 / batches_per_second == pytest.approx(seconds, abs=0.01)
    train_seconds = recorder.values("time/train_seconds")[8]
    assert train_seconds == pytest.approx(sum(clock.durations), abs=0.02)
    last = recorder.records[-1][1]
    assert "throughput/tokens_per_sec" not in last  # the model counts no tokens
    assert "throughput/mfu" not in last  # a CPU, and no peak given


def test_evaluation_time_is_not_training_time(tmp_path):
    clock, recorder = BatchClock(), Recorder()
    monitor = SpeedMonitor(window=4, log_interval=4)
    sleep = Sleep(batch=SLEEP, evaluation=0.3)  # after the monitor: inside its eval window
    trainer = make_trainer(
        tmp_path, "4ba", callbacks=[clock, monitor, sleep], loggers=[recorder], eval_interval="2ba"
    )
    trainer.fit()

    evaluations = [end - start for start, end in clock.evaluations]
    assert len(evaluations) >= 2 and min(evaluations) >= 0.3
    # The evaluation after batch 2 lies inside the 4 timed batches; the one after batch 4
    # comes after the monitor logged at batch 4.
    first_start, first_end = clock.evaluations[0]
    assert clock.ends[1] <= first_start and first_end <= clock.ends[2]
    logged = recorder.values("time/train_seconds")[4]
    assert logged == pytest.approx(clock.ends[3] - evaluations[0], abs=0.02)
    rate = recorder.values("throughput/samples_per_sec")[4]
    assert rate == pytest.approx(sum(clock.samples[:4]) / logged, rel=1e-6)
    assert monitor.eval_seconds == pytest.approx(sum(evaluations), abs=0.02)


def test_mfu_is_model_flops_over_time_over_peak(tmp_path):
    flops_per_sample, peak = 3.0e9, 1.0e12
    model = Pixels(flops_per_sample=flops_per_sample, tokens_per_sample=28)
    clock, recorder = BatchClock(), Recorder()
    monitor = SpeedMonitor(window=3, log_interval=3, peak_flops_per_second=peak)
    make_trainer(
        tmp_path,
        "6ba",
        model=model,
        callbacks=[clock, monitor, Sleep(batch=SLEEP)],
        loggers=[recorder],
        evaluate=False,
    ).fit()

    metrics = dict(recorder.records[-1][1])
    samples, seconds = sum(clock.samples[3:6]), sum(clock.durations[3:6])
    flops = flops_per_sample * samples
    assert flops / metrics["throughput/device/flops_per_sec"] == pytest.approx(seconds, abs=0.01)
    assert metrics["throughput/mfu"] == pytest.approx(
        metrics["throughput/device/flops_per_sec"] / peak, rel=1e-9
    )
    assert 28 * samples / metrics["throughput/tokens_per_sec"] == pytest.approx(seconds, abs=0.01)


def test_device_rates_divide_the_all_rank_counts_by_the_world_size(tmp_path):
    monitor = SpeedMonitor(window=4, log_interval=4)
    make_trainer(tmp_path, "4ba", callbacks=[monitor], evaluate=False).fit()
    one, four = monitor.compute(world_size=1), monitor.compute(world_size=4)
    assert four["throughput/samples_per_sec"] == one["throughput/samples_per_sec"]
    assert four["throughput/device/samples_per_sec"] == pytest.approx(
        one["throughput/samples_per_sec"] / 4, rel=1e-12
    )


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
