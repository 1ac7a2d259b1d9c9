"""Where metrics go: the console progress bar, a JSON-lines file, TensorBoard, MLflow, W&B.

Imports are lazy (`tessera.loggers.JSONLLogger` loads its module on first use), so importing
the package costs nothing and TensorBoard is needed only when used.
"""

from __future__ import annotations

from tessera.core.lazy import lazy_getattr

_EXPORTS = {
    "ProgressBarLogger": "tessera.loggers.progress",
    "JSONLLogger": "tessera.loggers.jsonl",
    "read_jsonl": "tessera.loggers.jsonl",
    "TensorBoardLogger": "tessera.loggers.tensorboard",
    "MLflowLogger": "tessera.loggers.mlflow",
    "WandBLogger": "tessera.loggers.wandb",
    "build_loggers": "tessera.loggers.registry",
    "LOGGERS": "tessera.loggers.registry",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
