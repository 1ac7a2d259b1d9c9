"""Cost you can see: time, money and memory of a run before it starts (`tessera estimate`), the
cost/quality frontier of finished runs, and the serving cost of a trained model.

Imports are lazy, so importing the package costs nothing. docs/estimate.md explains every number.
"""

from __future__ import annotations

from tessera.core.lazy import lazy_getattr

_EXPORTS = {
    "Hardware": "tessera.estimate.hardware",
    "get_hardware": "tessera.estimate.hardware",
    "Workload": "tessera.estimate.workload",
    "read_workload": "tessera.estimate.workload",
    "MemoryPlan": "tessera.estimate.memory",
    "memory_plan": "tessera.estimate.memory",
    "Estimate": "tessera.estimate.plan",
    "estimate_from_table": "tessera.estimate.plan",
    "estimate_from_probe": "tessera.estimate.plan",
    "run_probe": "tessera.estimate.probe",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
