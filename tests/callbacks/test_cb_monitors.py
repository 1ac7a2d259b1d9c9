"""LRMonitor logs the rate each batch trained with; MemoryMonitor reports real process memory."""

from __future__ import annotations

import pytest
import torch
from cb_loop import Loop, Recorder, TinyClassifier, make_state

from tessera.callbacks.lr_monitor import LRMonitor
from tessera.callbacks.memory_monitor import MemoryMonitor, current_rss_bytes, peak_rss_bytes


def test_lr_monitor_logs_the_rate_used_under_a_schedule():
    model = TinyClassifier()
    optimizer = torch.optim.SGD(
        [
            {"params": [model.net.weight], "lr": 0.1},
            {"params": [model.net.bias], "lr": 0.01},
        ]
    )
    state = make_state("9ba", model=model, optimizers=[optimizer])
    state.schedulers = [torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)]
    recorder = Recorder()
    loop = Loop(state, callbacks=[LRMonitor(log_interval=3)], loggers=[recorder])
    loop.fit()
    group0 = recorder.values("lr/group0")
    assert sorted(group0) == [3, 6, 9]
    for step, rate in group0.items():
        assert rate == pytest.approx(loop.lrs[step])  # what the optimizer stepped with
    # StepLR halves every 2 batches: batch 3 trains at 0.1/2, batch 9 at 0.1/16.
    assert group0[3] == pytest.approx(0.05) and group0[9] == pytest.approx(0.1 / 16)
    assert recorder.values("lr/group1")[9] == pytest.approx(0.01 / 16)


def test_lr_monitor_names_several_optimizers():
    model = TinyClassifier()
    optimizers = [
        torch.optim.SGD([model.net.weight], lr=0.1),
        torch.optim.Adam([model.net.bias], lr=0.003),
    ]
    state = make_state("2ba", model=model, optimizers=optimizers)
    recorder = Recorder()
    Loop(state, callbacks=[LRMonitor(log_interval=2)], loggers=[recorder]).fit()
    assert recorder.records[-1][1] == {
        "lr/optimizer0/group0": 0.1,
        "lr/optimizer1/group0": 0.003,
    }


def test_memory_monitor_reports_process_memory_on_cpu():
    monitor = MemoryMonitor(log_interval=2)
    recorder = Recorder()
    state = make_state("4ba")
    Loop(state, callbacks=[monitor], loggers=[recorder]).fit()
    rss = recorder.values("memory/rss_gib")
    peak = recorder.values("memory/peak_rss_gib")
    assert sorted(rss) == [2, 4]
    # A process with torch loaded holds well over 50 MiB; the peak is never below the current.
    assert rss[4] > 50 / 1024
    assert peak[4] >= rss[4] * 0.99


def test_peak_rss_grows_when_the_process_touches_more_memory():
    before_peak = peak_rss_bytes()
    block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, written so the pages are resident
    current = current_rss_bytes()
    assert current is not None and peak_rss_bytes() >= current * 0.99
    assert peak_rss_bytes() >= before_peak
    del block
