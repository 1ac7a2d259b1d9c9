"""Callbacks by name, for recipes' `callbacks:` section.

    callbacks:
      speed_monitor: {window: 50}
      lr_monitor:            # empty: default options
      early_stopping: {monitor: metrics/eval/accuracy, mode: max, patience: 3}
      memory_monitor: false  # switched off (handy for `key=value` overrides)

`CALLBACKS` is a `tessera.core.registry.Registry` (entry-point group `tessera.callbacks`);
classes are imported only when named, so importing the registry stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tessera.core.callback import Callback
from tessera.core.registry import Registry

CALLBACKS = Registry(
    "callbacks",
    "callbacks",
    {
        "speed_monitor": "tessera.callbacks.speed_monitor:SpeedMonitor",
        "lr_monitor": "tessera.callbacks.lr_monitor:LRMonitor",
        "memory_monitor": "tessera.callbacks.memory_monitor:MemoryMonitor",
        "early_stopping": "tessera.callbacks.early_stopping:EarlyStopper",
        "threshold_stopping": "tessera.callbacks.early_stopping:ThresholdStopper",
        "cost_monitor": "tessera.callbacks.cost_monitor:CostMonitor",
        "step_timer": "tessera.estimate.probe:StepTimer",
        "provenance": "tessera.callbacks.provenance:ProvenanceRecorder",
        "icl_evaluation": "tessera.eval.callback:ICLEvaluation",
        "loss_guard": "tessera.callbacks.loss_guard:LossGuard",
    },
)


def build_callbacks(spec: Mapping[str, Any] | None) -> list[Callback]:
    """Callbacks from `{name: options}` (options: a mapping, empty, true, or false for off).

    Each option not given takes its component's own default (there is no run-wide one).
    """
    return CALLBACKS.build_mapping(spec)
