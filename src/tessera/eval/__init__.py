"""In-context-learning evaluation: tasks as YAML data, a harness that agrees with
lm-evaluation-harness, the gauntlet, and a callback that evaluates during training.

Imports are lazy (`tessera.eval.evaluate` loads its module on first use).
"""

from __future__ import annotations

from tessera.core.lazy import lazy_getattr

_EXPORTS = {
    "TaskSpec": "tessera.eval.tasks",
    "TaskData": "tessera.eval.tasks",
    "load_task": "tessera.eval.tasks",
    "bundled_tasks": "tessera.eval.tasks",
    "find_eval_file": "tessera.eval.data",
    "TaskResult": "tessera.eval.harness",
    "evaluate": "tessera.eval.harness",
    "evaluate_task": "tessera.eval.harness",
    "load_gauntlet": "tessera.eval.gauntlet",
    "score_gauntlet": "tessera.eval.gauntlet",
    "load_model": "tessera.eval.models",
    "TesseraModel": "tessera.eval.models",
    "HFModel": "tessera.eval.models",
    "ICLEvaluation": "tessera.eval.callback",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
