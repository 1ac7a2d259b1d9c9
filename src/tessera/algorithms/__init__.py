"""Speed-up methods: each a plain function plus an `Algorithm` for the trainer's engine.

`get(name, **kwargs)` builds one method, `build_algorithms(spec)` the YAML `algorithms:`
mapping; `names()` lists them. Method modules are imported lazily on first use.
"""

from tessera.algorithms.registry import ALGORITHMS, build_algorithms, get, hyperparameters, names

__all__ = ["ALGORITHMS", "build_algorithms", "get", "hyperparameters", "names"]
