"""Every method's plain function, for use without the trainer (`tessera.functional`).

Each speed-up method in `tessera.algorithms` is a plain function on a model, a batch, a loss or
an optimizer, plus an `Algorithm` that calls it at the right training events. This module
gathers the plain functions in one namespace:

    import tessera.functional as tf
    tf.apply_blurpool(model)                                # model surgery
    inputs, targets, permuted, lam = tf.mixup_batch(x, y)   # a batch transform
    loss = tf.smoothed_loss(loss, logits, smoothing=0.1)    # a loss change

Names load on first use, so `import tessera.functional` imports no method module (nor torch).
Each function checks its arguments with the constraints of its method's `Config`. The list is
each method module's `__all__` without its Algorithm and Config classes (a test keeps it so).
"""

from __future__ import annotations

from tessera.core.lazy import lazy_getattr

_MODULES = {
    "alibi": ["apply_alibi"],
    "augmix": ["augmix_batch"],
    "batchnorm_groups": ["batchnorm_parameters", "split_batchnorm_groups"],
    "batch_size_warmup": ["take_samples", "warmup_batch_size"],
    "blurpool": ["apply_blurpool", "blur_2d"],
    "channels_last": ["apply_channels_last", "to_channels_last"],
    "colout": ["colout_batch"],
    "cutmix": ["cutmix_batch"],
    "cutout": ["cutout_batch", "cutout_mask"],
    "device_data": ["to_device_loader"],
    "ema": ["swap_weights", "update_ema"],
    "factorize": ["apply_factorization"],
    "flip_tta": ["flip_tta_outputs"],
    "float8": ["convert_to_float8", "fp8_unavailable_reason"],
    "fused_optimizer": ["use_fused_kernels"],
    "gated_linear_units": ["apply_gated_linear_units"],
    "horizontal_flip": ["flip_batch", "image_coins"],
    "ghost_batchnorm": ["apply_ghost_batchnorm"],
    "gradient_clipping": ["adaptive_clip_", "clip_gradients"],
    "label_smoothing": ["smooth_labels", "smoothed_loss", "uniform_cross_entropy"],
    "layer_freezing": ["freeze_layers", "frozen_fraction"],
    "lookahead": ["LookaheadOptimizer", "lookahead_alpha"],  # an optimizer wrapper, like SAM
    "logit_softcap": ["apply_logit_softcap"],
    "low_precision_norm": ["apply_low_precision_norm"],
    "magnitude_pruning": ["cubic_sparsity", "magnitude_mask", "measured_sparsity", "prune_model"],
    "mixup": ["mixup_batch", "sample_mixing_weight"],
    "patch_whitening": [
        "apply_patch_whitening",
        "first_conv",
        "patch_covariance",
        "whitening_filters",
    ],
    "progressive_resizing": ["resize_batch", "resizing_scale"],
    "qk_norm": ["apply_qk_norm"],
    "randaugment": ["randaugment_batch"],
    "relu_squared": ["apply_relu_squared"],
    "sam": ["SAMOptimizer"],  # SAM's functional form is an optimizer wrapper
    "selective_backprop": ["select_batch", "select_by_loss"],
    "semi_structured_sparsity": [
        "apply_semi_structured_pruning",
        "semi_structured_mask",
        "to_semi_structured",
    ],
    "sequence_length_warmup": ["reshape_sequences", "truncate_sequences", "warmup_length"],
    "sliding_window_attention": ["apply_sliding_window"],
    "squeeze_excite": ["apply_squeeze_excite"],
    "stochastic_depth": ["apply_stochastic_depth", "drop_samples"],
    "swa": ["load_average", "recompute_batchnorm", "update_swa"],
    "unet_skips": ["apply_unet_skips"],
    "value_embeddings": ["apply_value_embeddings"],
    "weight_standardization": ["apply_weight_standardization"],
    "zero_init_projections": ["apply_zero_init_projections"],
}

EXPORTS = {
    name: f"tessera.algorithms.{module}" for module, names in _MODULES.items() for name in names
}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_getattr(__name__, EXPORTS)


def __dir__() -> list[str]:
    return __all__
