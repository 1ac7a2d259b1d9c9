"""What a recipe asks the hardware to do: FLOPs, samples and tokens per batch, batches, evaluations
and checkpoints, and the activation memory of one sample, all read from the model itself.

The model is built on PyTorch's "meta" device (shapes only, no memory), so a 7B recipe is read
in seconds on a laptop. Training FLOPs are the model's own `flops_per_batch` (the number the MFU
monitor divides by); a model that does not define it is counted by PyTorch's `FlopCounterMode`
over one forward and backward pass. Activation memory is the sum of the tensors autograd saves
for the backward pass of one sample (unique storages), measured the same way.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from tessera.config.schema import RunConfig
from tessera.core.errors import ConfigError, DataError, UserError
from tessera.core.microbatch import move_to_device, split_batch
from tessera.core.time import Time, TimeUnit

OPTIMIZER_STATE_BYTES = {"adamw": 8, "adam": 8}  # two fp32 moments per parameter


@dataclass
class Workload:
    """One recipe's work. Counts are global (all GPUs together); FLOPs are training FLOPs."""

    recipe: str
    parameters: int
    trainable_parameters: int
    parameter_tensors: int
    blocks: int
    language_model: bool
    flops_per_sample: float
    flops_source: str
    samples_per_batch: int
    tokens_per_batch: int
    batches_per_epoch: int | None
    total_batches: int
    eval_samples: int | None
    evaluations: int
    checkpoints: int
    activation_bytes_per_sample: float
    largest_activation_per_sample: float
    precision: str
    optimizer: str
    optimizer_state_bytes: int
    compiled: bool
    strategy: str
    microbatch_size: int | None
    notes: list[str] = field(default_factory=list)

    @property
    def flops_per_batch(self) -> float:
        return self.flops_per_sample * self.samples_per_batch

    @property
    def total_flops(self) -> float:
        return self.flops_per_batch * self.total_batches

    @property
    def total_tokens(self) -> int:
        return self.tokens_per_batch * self.total_batches

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {
            "flops_per_batch": self.flops_per_batch,
            "total_flops": self.total_flops,
            "total_tokens": self.total_tokens,
        }


def read_workload(config: RunConfig, recipe: str = "recipe") -> Workload:
    """The workload of a validated run config (see the module docstring for how)."""
    from tessera.config.build import build_data

    notes: list[str] = []
    model = _meta_model(config, notes)
    try:
        data = build_data(config)
        batch = next(iter(data.train))
        batches_per_epoch = _length(data.train)
        eval_samples = _eval_samples(data.eval)
        data_problem = None
    except (UserError, OSError, StopIteration) as error:
        data_problem = f"{type(error).__name__}: {error}"
        batch, batches_per_epoch, eval_samples = _batch_from_recipe(
            config, model, data_problem, notes
        )
    batch = move_to_device(batch, torch.device("meta"))
    samples = model.num_samples(batch)
    tokens = model.num_tokens(batch)
    one = split_batch(batch, 1)[0]
    flops, source = _training_flops(model, one)
    saved, largest = _saved_activation_bytes(model, one, config.precision)
    total = _total_batches(config, samples, tokens, batches_per_epoch, data_problem)
    if config.algorithms:
        notes.append(
            "algorithms (" + ", ".join(config.algorithms) + ") are not applied to the FLOP and "
            "memory counts"
        )
    optimizer = config.optimizer.name
    momentum = optimizer in ("sgd", "sgdw") and (config.optimizer.momentum or 0) > 0
    microbatch = config.device_train_microbatch_size
    return Workload(
        recipe=recipe,
        parameters=sum(p.numel() for p in model.parameters()),
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        parameter_tensors=sum(1 for _ in model.parameters()),
        blocks=max(
            (len(m) for m in model.modules() if isinstance(m, torch.nn.ModuleList)), default=1
        ),
        language_model=tokens > 0,
        flops_per_sample=flops,
        flops_source=source,
        samples_per_batch=samples,
        tokens_per_batch=tokens,
        batches_per_epoch=batches_per_epoch,
        total_batches=total,
        eval_samples=eval_samples,
        evaluations=_count(config.eval_interval, total, batches_per_epoch, samples, tokens),
        checkpoints=_count(config.save_interval, total, batches_per_epoch, samples, tokens),
        activation_bytes_per_sample=saved,
        largest_activation_per_sample=largest,
        precision=config.precision,
        optimizer=optimizer,
        optimizer_state_bytes=OPTIMIZER_STATE_BYTES.get(optimizer, 4 if momentum else 0),
        compiled=config.compile is not None,
        strategy=config.parallelism.strategy,
        microbatch_size=microbatch if isinstance(microbatch, int) else None,
        notes=notes,
    )


def _meta_model(config: RunConfig, notes: list[str]) -> Any:
    """The recipe's model with meta tensors. A tokenizer file that is not here is dropped when the
    recipe also gives vocab_size (only the shape matters), and that is said."""
    from tessera.config.build import build_model

    try:
        with torch.device("meta"):
            model = build_model(config)
    except UserError as error:
        tokenizer = getattr(config.model, "tokenizer", None)
        vocab = getattr(config.model, "vocab_size", None)
        if tokenizer is None or vocab is None:
            raise
        notes.append(
            f"model.tokenizer {tokenizer!r} could not be loaded here ({error}); the shape was "
            f"read with vocab_size {vocab}"
        )
        shape = config.model_copy(
            update={"model": config.model.model_copy(update={"tokenizer": None})}
        )
        with torch.device("meta"):
            model = build_model(shape)
    if config.activation_checkpointing:
        from tessera.parallel.blocks import apply_activation_checkpointing

        apply_activation_checkpointing(model, config.parallelism.wrap)
    if hasattr(model, "_vocab_checked"):  # the GPT's first-batch data check reads token values,
        model._vocab_checked = True  # which meta tensors do not have
    return model.train()


def _batch_from_recipe(
    config: RunConfig, model: Any, problem: str, notes: list[str]
) -> tuple[Any, int | None, int | None]:
    """Without readable data, a token batch can still be shaped from the recipe: batch_size
    sequences of seq_len (or the model's max_seq_len) tokens."""
    data = config.data
    length = getattr(data, "seq_len", None) or getattr(
        getattr(model, "config", None), "max_seq_len", None
    )
    if data.name != "text" or not length:
        raise DataError(
            f"data: the data set could not be read here ({problem}), and its batches cannot be "
            "shaped from the recipe alone; make the data readable (data.path, data.text) and "
            "run again."
        )
    batch_size = int(getattr(data, "batch_size", 64))
    notes.append(
        f"data not readable here ({problem}); assumed {batch_size} sequences of {length} "
        "tokens per batch from the recipe"
    )
    eval_samples = getattr(data, "eval_max_sequences", None)
    return (
        {"input_ids": torch.zeros(batch_size, int(length) + 1, dtype=torch.long)},
        None,
        (int(eval_samples) if eval_samples else None),
    )


def _length(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def _eval_samples(loaders: dict[str, Any]) -> int | None:
    total = 0
    for loader in loaders.values():
        dataset = getattr(loader, "dataset", None)
        try:
            total += len(dataset)  # type: ignore[arg-type]
        except TypeError:
            return None
    return total


def _total_batches(
    config: RunConfig, samples: int, tokens: int, per_epoch: int | None, problem: str | None
) -> int:
    duration = Time.coerce(config.max_duration, "max_duration") * config.scale_schedule_ratio
    if duration.unit == TimeUnit.BATCH:
        return int(duration.value)
    if duration.unit == TimeUnit.SAMPLE:
        return math.ceil(duration.value / samples)
    if duration.unit == TimeUnit.TOKEN:
        if not tokens:
            raise ConfigError(
                f"max_duration: {duration} counts tokens, but this model's batches hold none; "
                "give it in epochs, batches or samples"
            )
        return math.ceil(duration.value / tokens)
    if duration.unit == TimeUnit.EPOCH:
        if per_epoch is None:
            why = (
                f"the data could not be read here ({problem})"
                if problem
                else ("the training data has no known length (streaming)")
            )
            raise DataError(
                f"max_duration: {config.max_duration} is in epochs, and the size of the data set "
                f"is unknown: {why}. An estimate needs the number of samples per epoch: make the "
                "data readable here, or give max_duration in batches, samples or tokens "
                "(e.g. max_duration=1000ba)."
            )
        return int(duration.value * per_epoch)
    raise ConfigError(f"max_duration: {duration} is a fraction; give a length in a real unit")


def _count(interval: Any, total: int, per_epoch: int | None, samples: int, tokens: int) -> int:
    """How many times an interval (eval, checkpoint) fires in `total` batches (the end counts)."""
    if interval is None:
        return 0
    every = Time.coerce(interval, "interval")
    batches: float | None
    if every.unit == TimeUnit.BATCH:
        batches = every.value
    elif every.unit == TimeUnit.EPOCH:
        batches = every.value * per_epoch if per_epoch else None
    elif every.unit == TimeUnit.SAMPLE:
        batches = every.value / samples
    elif every.unit == TimeUnit.TOKEN:
        batches = every.value / tokens if tokens else None
    else:
        batches = every.value * total
    if not batches:
        return 1
    return max(1, math.ceil(total / batches))


def _training_flops(model: Any, one: Any) -> tuple[float, str]:
    flops = model.flops_per_batch(one)
    if flops is not None:
        return float(flops), "model.flops_per_batch (the MFU monitor's count)"
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model.loss(model(one), one).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops()), "PyTorch FlopCounterMode (forward + backward)"


def _saved_activation_bytes(model: Any, one: Any, precision: str) -> tuple[float, float]:
    """Bytes autograd keeps for backward for one sample, and the largest such tensor. Under
    mixed precision the model is measured in bf16 (autocast does not act on meta tensors)."""
    if precision != "fp32":
        model = model.to(torch.bfloat16)
        one = _floats_to(one, torch.bfloat16)
    sizes: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        sizes[storage._cdata] = max(sizes.get(storage._cdata, 0), storage.nbytes())
        return tensor

    with _flash_like_attention(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.loss(model(one), one)
    if precision != "fp32":
        model.to(torch.float32)
    return float(sum(sizes.values())), float(max(sizes.values(), default=0))


@contextlib.contextmanager
def _flash_like_attention() -> Iterator[None]:
    """On meta tensors SDPA takes its math path, which keeps the T x T attention probabilities;
    GPUs (flash, memory-efficient) and CPUs (flash for CPU) keep only q, k, v and the output.
    Count attention the way those kernels keep it."""
    real = F.scaled_dot_product_attention

    class Attention(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, q: Any, k: Any, v: Any, kwargs: dict[str, Any]) -> Any:
            with torch.no_grad():
                out = real(q, k, v, **kwargs)
            ctx.save_for_backward(q, k, v, out)
            return out

    def attention(q: Any, k: Any, v: Any, **kwargs: Any) -> Any:
        return Attention.apply(q, k, v, kwargs)

    F.scaled_dot_product_attention = attention
    try:
        yield
    finally:
        F.scaled_dot_product_attention = real


def _floats_to(batch: Any, dtype: torch.dtype) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(dtype) if batch.is_floating_point() else batch
    if isinstance(batch, dict):
        return {key: _floats_to(value, dtype) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_floats_to(value, dtype) for value in batch)
    return batch
