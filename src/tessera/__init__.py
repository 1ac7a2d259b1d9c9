"""Tessera: faster, cheaper, dependable neural-network training with a model you own.

The public face, imported on first use so `import tessera` stays fast:

    from tessera import Trainer, Time, Event, State, Algorithm, Callback, Evaluator
"""

from __future__ import annotations

from tessera.core.lazy import lazy_getattr

__version__ = "0.1.0"

_EXPORTS = {
    "Trainer": "tessera.trainer",
    "TrainerSettings": "tessera.trainer",
    "Time": "tessera.core.time",
    "TimeUnit": "tessera.core.time",
    "Timestamp": "tessera.core.time",
    "Event": "tessera.core.event",
    "State": "tessera.core.state",
    "Algorithm": "tessera.core.algorithm",
    "Callback": "tessera.core.callback",
    "LoggerDestination": "tessera.core.logger",
    "ComponentConfig": "tessera.core.component",
    "Evaluator": "tessera.core.evaluator",
    "Checkpointer": "tessera.core.checkpointer",
    "FileCheckpointer": "tessera.core.checkpointer",
    "TrainableModel": "tessera.core.model",
    "ModuleWithLoss": "tessera.models.module_with_loss",
    "Registry": "tessera.core.registry",
    "StreamingDataset": "tessera.data.dataset",
    "ShardWriter": "tessera.data.writer",
    "ResumableSampler": "tessera.data.sampler",
    "make_dataloader": "tessera.data.sampler",
    "ParallelismConfig": "tessera.parallel.config",
    "CompileConfig": "tessera.parallel.config",
    "ShardedCheckpointer": "tessera.parallel.sharded_checkpointer",
    "OptimizerConfig": "tessera.optim.optimizers",
    "SchedulerConfig": "tessera.optim.schedulers",
    "UserError": "tessera.core.errors",
    "ConfigError": "tessera.core.errors",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
