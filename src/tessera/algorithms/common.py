"""Shared pieces of the method library: argument checks, batch access and warnings.

A method's options are declared once, as the fields of its `Config` (type, default, range,
choices); the Algorithm is validated by it at construction or recipe load. The public plain
functions check their own arguments against the same fields with `check_fields`, and arguments
that are no option of any method with `check_range`, so a bad value raises one
`ConfigError` naming the method, the field, the value and what is accepted.
"""

from __future__ import annotations

import functools
import warnings
from typing import Annotated, Any

import torch
from pydantic import BaseModel, TypeAdapter, ValidationError

from tessera.core.errors import ConfigError


class NoEffectWarning(UserWarning):
    """A method found nothing to act on (e.g. BlurPool on a model without strided convs)."""


def check_range(
    method: str,
    field: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    integer: bool = False,
) -> None:
    """Raise a ConfigError unless `value` is a number inside the stated interval."""
    left = "[" if low_inclusive else "("
    right = "]" if high_inclusive else ")"
    interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    kind = "an integer" if integer else "a number"
    accepted = f"{kind} in {interval}"
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or (integer and int(value) != value):
        raise ConfigError(f"algorithm '{method}': {field}={value!r} is not {kind}; use {accepted}")
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high:
        raise ConfigError(
            f"algorithm '{method}': {field}={value!r} is out of range; valid range is {accepted}"
        )


@functools.cache
def _field_adapter(config_class: type[BaseModel], field: str) -> TypeAdapter:
    info = config_class.model_fields[field]
    annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(annotation)


def not_empty(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """A field validator for lists that need at least one entry."""
    if not values:
        raise ValueError("give at least one entry")
    return values


def check_fields(config_class: type[BaseModel], method: str, **values: Any) -> None:
    """Raise a ConfigError unless each value is accepted by the same-named field of a Config.

    This is how a plain function checks its arguments with the constraints its method's
    `Config` declares (written once there)."""
    for field, value in values.items():
        try:
            _field_adapter(config_class, field).validate_python(value)
        except ValidationError as error:
            reason = error.errors()[0]["msg"].removeprefix("Value error, ")
            raise ConfigError(
                f"algorithm '{method}': {field}={value!r} is not accepted: {reason}"
            ) from None


def warn_no_effect(method: str, reason: str) -> None:
    warnings.warn(f"{method}: {reason}; the method changes nothing", NoEffectWarning, stacklevel=3)


def no_effect_error(method: str, reason: str) -> ConfigError:
    return ConfigError(
        f"algorithm '{method}' has nothing to act on: {reason}. Remove it from `algorithms`, "
        "or use a model it applies to"
    )


def inputs_and_targets(batch: Any, method: str) -> tuple[torch.Tensor, Any]:
    """The (inputs, targets) of a vision batch; a clear error for any other batch shape."""
    if isinstance(batch, (tuple, list)) and len(batch) >= 2 and isinstance(batch[0], torch.Tensor):
        return batch[0], batch[1]
    raise ConfigError(
        f"algorithm '{method}' needs batches of the form (inputs, targets) with a tensor of "
        f"inputs first; got a batch of type {type(batch).__name__}"
    )


def with_inputs(batch: Any, inputs: torch.Tensor) -> Any:
    """The same batch (tuple or list) with its inputs replaced."""
    return type(batch)([inputs, *batch[1:]])


def with_targets(batch: Any, targets: Any) -> Any:
    """The same batch (tuple or list) with its targets replaced."""
    return type(batch)([batch[0], targets, *batch[2:]])


def require_images(inputs: torch.Tensor, method: str) -> None:
    if inputs.ndim != 4:
        raise ConfigError(
            f"algorithm '{method}' works on image batches of shape (N, C, H, W); got inputs of "
            f"shape {tuple(inputs.shape)}"
        )
