"""LRMonitor and MemoryMonitor in the real Trainer: the rate logged is the one the optimizer
stepped with; the memory logged is what the operating system reports for the process."""

from __future__ import annotations

import resource

import pytest
import torch
from cb_support import Pixels, RateProbe, Recorder, make_trainer

from tessera.callbacks.lr_monitor import LRMonitor
from tessera.callbacks.memory_monitor import MemoryMonitor, current_rss_bytes
from tessera.core.callback import Callback

MIB = 1024**2
GIB = 1024**3


def test_lr_monitor_logs_the_rate_each_batch_was_stepped_with(tmp_path):
    model = Pixels()
    weight, bias = model.module[1].weight, model.module[1].bias
    optimizer = torch.optim.SGD([{"params": [weight], "lr": 0.1}, {"params": [bias], "lr": 0.01}])
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    probe, recorder = RateProbe(), Recorder()
    make_trainer(
        tmp_path,
        "9ba",
        model=model,
        optimizers=optimizer,
        schedulers=[schedule],
        callbacks=[LRMonitor(log_interval=3), probe],
        loggers=[recorder],
        evaluate=False,
    ).fit()

    group0, group1 = recorder.values("lr/group0"), recorder.values("lr/group1")
    assert sorted(group0) == sorted(group1) == [3, 6, 9]
    for step in (3, 6, 9):
        assert [group0[step], group1[step]] == pytest.approx(probe.rates[step][0], rel=1e-12)
    # StepLR, stepped after every batch, halves the rate every 2 batches: batch k trains at
    # 0.1 * 0.5 ** ((k - 1) // 2).
    for step in (3, 6, 9):
        assert group0[step] == pytest.approx(0.1 * 0.5 ** ((step - 1) // 2), rel=1e-12)
        assert group1[step] == pytest.approx(0.01 * 0.5 ** ((step - 1) // 2), rel=1e-12)


def test_lr_monitor_names_several_optimizers(tmp_path):
    model = Pixels()
    weight, bias = model.module[1].weight, model.module[1].bias
    optimizers = [torch.optim.SGD([weight], lr=0.1), torch.optim.Adam([bias], lr=0.003)]
    recorder = Recorder()
    make_trainer(
        tmp_path,
        "2ba",
        model=model,
        optimizers=optimizers,
        callbacks=[LRMonitor(log_interval=2)],
        loggers=[recorder],
        evaluate=False,
    ).fit()
    assert recorder.records == [(2, {"lr/optimizer0/group0": 0.1, "lr/optimizer1/group0": 0.003})]


class HoldMemory(Callback):
    """Holds a written (so resident) block of `mib` MiB from the start of batch `at` to the end
    of the run, and reads the process's memory itself right after the monitor logged."""

    def __init__(self, at: int, mib: int) -> None:
        super().__init__()
        self.at, self.mib = at, mib
        self.block: torch.Tensor | None = None
        self.rss: dict[int, int] = {}
        self.peak: dict[int, int] = {}

    def batch_start(self, state, logger) -> None:
        if state.timestamp.batch + 1 == self.at:
            self.block = torch.ones(self.mib * MIB // 4)

    def batch_end(self, state, logger) -> None:
        self.rss[state.timestamp.batch] = current_rss_bytes()
        self.peak[state.timestamp.batch] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def fit_end(self, state, logger) -> None:
        self.block = None


def test_memory_monitor_reports_what_the_process_holds(tmp_path):
    hold, recorder = HoldMemory(at=4, mib=128), Recorder()
    make_trainer(
        tmp_path,
        "4ba",
        callbacks=[MemoryMonitor(log_interval=2), hold],
        loggers=[recorder],
        evaluate=False,
    ).fit()

    rss, peak = recorder.values("memory/rss_gib"), recorder.values("memory/peak_rss_gib")
    assert sorted(rss) == sorted(peak) == [2, 4]
    for step in (2, 4):  # read independently a moment later: the same within a few MiB
        assert rss[step] * GIB == pytest.approx(hold.rss[step], abs=8 * MIB)
        # ru_maxrss is in KiB on Linux: the monitor reports bytes / GiB.
        assert peak[step] * GIB == pytest.approx(hold.peak[step] * 1024, abs=8 * MIB)
    # The 128 MiB block held during batch 4 shows in the resident memory logged then.
    assert (rss[4] - rss[2]) * GIB > 120 * MIB
