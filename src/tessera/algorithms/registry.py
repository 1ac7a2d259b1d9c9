"""The method registry: names in recipes to Algorithm classes, each with its typed `Config`.

`ALGORITHMS` is a `tessera.core.registry.Registry`: built-ins are imported on first use, and
installed packages add methods through the `tessera.algorithms` entry-point group.
`get("label_smoothing", smoothing=0.1)` builds one method; `build_algorithms(spec)` builds a
recipe's `algorithms:` mapping and checks declared conflicts at once. A method's former name
(`RENAMED`) is refused with an error that names the method to use instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tessera.core.algorithm import Algorithm
from tessera.core.errors import ConfigError
from tessera.core.registry import Registry

_BUILTINS = {
    "alibi": "alibi:Alibi",
    "gated_linear_units": "gated_linear_units:GatedLinearUnits",
    "sequence_length_warmup": "sequence_length_warmup:SequenceLengthWarmup",
    "batch_size_warmup": "batch_size_warmup:BatchSizeWarmup",
    "qk_norm": "qk_norm:QKNorm",
    "relu_squared": "relu_squared:ReLUSquared",
    "zero_init_projections": "zero_init_projections:ZeroInitProjections",
    "logit_softcap": "logit_softcap:LogitSoftcap",
    "value_embeddings": "value_embeddings:ValueEmbeddings",
    "unet_skips": "unet_skips:UNetSkips",
    "sliding_window_attention": "sliding_window_attention:SlidingWindowAttention",
    "augmix": "augmix:AugMix",
    "batchnorm_groups": "batchnorm_groups:BatchNormGroups",
    "blurpool": "blurpool:BlurPool",
    "channels_last": "channels_last:ChannelsLast",
    "colout": "colout:ColOut",
    "cutmix": "cutmix:CutMix",
    "cutout": "cutout:CutOut",
    "device_data": "device_data:DeviceData",
    "ema": "ema:EMA",
    "factorize": "factorize:Factorize",
    "flip_tta": "flip_tta:FlipTTA",
    "float8": "float8:Float8",
    "fused_optimizer": "fused_optimizer:FusedOptimizer",
    "horizontal_flip": "horizontal_flip:HorizontalFlip",
    "ghost_batchnorm": "ghost_batchnorm:GhostBatchNormAlgorithm",
    "gradient_clipping": "gradient_clipping:GradientClipping",
    "label_smoothing": "label_smoothing:LabelSmoothing",
    "layer_freezing": "layer_freezing:LayerFreezing",
    "lookahead": "lookahead:Lookahead",
    "low_precision_norm": "low_precision_norm:LowPrecisionNormAlgorithm",
    "magnitude_pruning": "magnitude_pruning:MagnitudePruning",
    "mixup": "mixup:MixUp",
    "patch_whitening": "patch_whitening:PatchWhitening",
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

# Former names: old name -> (the method to use, what changed).
RENAMED = {
    "low_precision_layernorm": (
        "low_precision_norm",
        "it was merged into low_precision_norm, which changes LayerNorm and RMSNorm the same "
        "way (names and checkpoints unchanged) and GroupNorm and BatchNorm too; "
        "`kinds: [layernorm, rmsnorm]` limits it to what low_precision_layernorm changed",
    ),
}


class AlgorithmRegistry(Registry):
    """The method registry: a `Registry` that refuses former names, saying the new one."""

    def get(self, name: str) -> Any:
        if isinstance(name, str) and name in RENAMED:
            new, why = RENAMED[name]
            raise ConfigError(
                f"{self.section}: {name!r} is no longer a method: {why}. Rename the key "
                f"{name!r} to {new!r}"
            )
        return super().get(name)


ALGORITHMS = AlgorithmRegistry(
    "algorithms",
    "algorithms",
    {name: f"tessera.algorithms.{target}" for name, target in _BUILTINS.items()},
)


def names() -> list[str]:
    """All registered method names, sorted."""
    return ALGORITHMS.names()


def algorithm_class(name: str) -> type[Algorithm]:
    """The Algorithm class registered under `name`; ConfigError with close names if unknown."""
    return ALGORITHMS.get(name)


def hyperparameters(name: str) -> dict[str, Any]:
    """The method's options and their defaults (what its recipe block accepts)."""
    return {key: field.default for key, field in ALGORITHMS.config_class(name).model_fields.items()}


def get(name: str, **options: Any) -> Algorithm:
    """Build the method `name` with `options`, checked before anything runs."""
    return ALGORITHMS.build(name, options)


def build_algorithms(spec: Mapping[str, Mapping[str, Any] | None] | None) -> list[Algorithm]:
    """Build a recipe's `algorithms:` mapping (name -> options, null or false), in order."""
    from tessera.core.engine import check_conflicts

    algorithms = ALGORITHMS.build_mapping(spec)
    check_conflicts(algorithms)
    return algorithms
