"""Scale-out: joining a multi-process job, and `parallelize` (activation checkpointing, compile,
DDP or FSDP2 in one documented order), plus sharded checkpoints for FSDP runs.

Names are imported on first use, so `import tessera.parallel` costs nothing.
"""

from __future__ import annotations

from tessera.core.lazy import lazy_getattr

_EXPORTS = {
    "ParallelismConfig": "tessera.parallel.config",
    "CompileConfig": "tessera.parallel.config",
    "parallelize": "tessera.parallel.parallelize",
    "Parallelized": "tessera.parallel.parallelize",
    "ShardedCheckpointer": "tessera.parallel.sharded_checkpointer",
    "consolidate": "tessera.parallel.sharded_checkpointer",
    "start": "tessera.parallel.process_group",
    "stop": "tessera.parallel.process_group",
    "launched_by_torchrun": "tessera.parallel.process_group",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
