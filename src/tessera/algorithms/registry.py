"""The method registry: names in YAML to Algorithm classes, with checked hyper-parameters.

Names map to `module:Class` paths and are imported on first use, so `import tessera.algorithms`
stays light. `get("label_smoothing", smoothing=0.1)` builds one method; `build_algorithms`
builds the YAML `algorithms:` mapping and checks declared conflicts at once.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from tessera.core.algorithm import Algorithm
from tessera.core.errors import ConfigError, did_you_mean

_PACKAGE = "tessera.algorithms"

ALGORITHMS: dict[str, str] = {
    "alibi": "alibi:Alibi",
    "gated_linear_units": "gated_linear_units:GatedLinearUnits",
    "low_precision_layernorm": "low_precision_layernorm:LowPrecisionLayerNormAlgorithm",
    "sequence_length_warmup": "sequence_length_warmup:SequenceLengthWarmup",
    "augmix": "augmix:AugMix",
    "blurpool": "blurpool:BlurPool",
    "channels_last": "channels_last:ChannelsLast",
    "colout": "colout:ColOut",
    "compile": "compile:Compile",
    "cutmix": "cutmix:CutMix",
    "cutout": "cutout:CutOut",
    "ema": "ema:EMA",
    "factorize": "factorize:Factorize",
    "fused_optimizer": "fused_optimizer:FusedOptimizer",
    "ghost_batchnorm": "ghost_batchnorm:GhostBatchNormAlgorithm",
    "gradient_clipping": "gradient_clipping:GradientClipping",
    "label_smoothing": "label_smoothing:LabelSmoothing",
    "layer_freezing": "layer_freezing:LayerFreezing",
    "low_precision_norm": "low_precision_norm:LowPrecisionNormAlgorithm",
    "magnitude_pruning": "magnitude_pruning:MagnitudePruning",
    "mixup": "mixup:MixUp",
    "progressive_resizing": "progressive_resizing:ProgressiveResizing",
    "randaugment": "randaugment:RandAugment",
    "sam": "sam:SAM",
    "selective_backprop": "selective_backprop:SelectiveBackprop",
    "semi_structured_sparsity": "semi_structured_sparsity:SemiStructuredSparsity",
    "squeeze_excite": "squeeze_excite:SqueezeExcite",
    "stochastic_depth": "stochastic_depth:StochasticDepth",
    "swa": "swa:SWA",
    "weight_standardization": "weight_standardization:WeightStandardization",
}


def names() -> list[str]:
    """All registered method names, sorted."""
    return sorted(ALGORITHMS)


def algorithm_class(name: str) -> type[Algorithm]:
    """The Algorithm class registered under `name`; ConfigError with close names if unknown."""
    if not isinstance(name, str) or name not in ALGORITHMS:
        raise ConfigError(
            f"algorithms: unknown method {name!r}; {did_you_mean(str(name), ALGORITHMS)}"
        )
    module_name, class_name = ALGORITHMS[name].split(":")
    module = importlib.import_module(f"{_PACKAGE}.{module_name}")
    return getattr(module, class_name)


def hyperparameters(name: str) -> dict[str, Any]:
    """The method's hyper-parameters and their defaults (what its YAML block accepts)."""
    signature = inspect.signature(algorithm_class(name).__init__)
    return {
        key: (None if p.default is inspect.Parameter.empty else p.default)
        for key, p in signature.parameters.items()
        if key != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def get(name: str, **kwargs: Any) -> Algorithm:
    """Build the method `name` with hyper-parameters `kwargs`, checked before anything runs."""
    cls = algorithm_class(name)
    accepted = hyperparameters(name)
    for key in kwargs:
        if key not in accepted:
            hint = did_you_mean(key, accepted) if accepted else "it takes no hyper-parameters."
            raise ConfigError(f"algorithms.{name}: unknown hyper-parameter {key!r}; {hint}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"algorithms.{name}: bad hyper-parameters {kwargs}: {error}") from error


def build_algorithms(spec: Mapping[str, Mapping[str, Any] | None] | None) -> list[Algorithm]:
    """Build the YAML `algorithms:` mapping (name -> hyper-parameters or null), in order."""
    if spec is None:
        return []
    if not isinstance(spec, Mapping):
        raise ConfigError(
            "algorithms: expected a mapping from method name to its hyper-parameters, e.g. "
            "{blurpool: {}, label_smoothing: {smoothing: 0.1}}; got "
            f"{type(spec).__name__}"
        )
    algorithms = []
    for name, kwargs in spec.items():
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, Mapping):
            raise ConfigError(
                f"algorithms.{name}: expected a mapping of hyper-parameters (or null), got "
                f"{kwargs!r}"
            )
        algorithms.append(get(name, **dict(kwargs)))
    from tessera.core.engine import check_conflicts

    check_conflicts(algorithms)
    return algorithms
