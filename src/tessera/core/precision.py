"""Numeric precision of a run: fp32, or automatic mixed precision in bf16 or fp16.

`amp_fp16` needs a gradient scaler to keep small gradients from flushing to zero; bf16 has
fp32's exponent range and needs none.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator

import torch

from tessera.core.errors import ConfigError


class Precision(str, enum.Enum):
    FP32 = "fp32"
    AMP_BF16 = "amp_bf16"
    AMP_FP16 = "amp_fp16"

    @classmethod
    def parse(cls, value: str | Precision) -> Precision:
        try:
            return cls(value)
        except ValueError:
            accepted = ", ".join(repr(p.value) for p in cls)
            raise ConfigError(
                f"precision: {value!r} is not a precision; accepted: {accepted}"
            ) from None

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {Precision.AMP_BF16: torch.bfloat16, Precision.AMP_FP16: torch.float16}.get(self)


def check_precision(precision: Precision, device: torch.device) -> None:
    """Refuse a precision the device cannot run, before any work is done."""
    cuda = device.type == "cuda"
    if precision == Precision.AMP_BF16 and cuda and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            "precision: 'amp_bf16' is not supported by this GPU; use 'amp_fp16' or 'fp32'"
        )
    if precision == Precision.AMP_FP16 and device.type == "mps":
        raise ConfigError("precision: 'amp_fp16' is not supported on MPS; use 'fp32'")


@contextlib.contextmanager
def autocast(precision: Precision, device: torch.device) -> Iterator[None]:
    """Autocast for the forward pass and loss under a mixed precision; nothing under fp32."""
    dtype = precision.autocast_dtype
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def make_grad_scaler(precision: Precision, device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler: active for fp16 training, disabled (a pass-through) otherwise."""
    return torch.amp.GradScaler(device.type, enabled=precision == Precision.AMP_FP16)
