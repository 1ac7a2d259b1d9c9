"""DistributedDataParallel: every rank holds the whole model; gradients are all-reduced in
buckets during backward, overlapping communication with computation."""

from __future__ import annotations

import torch
from torch import nn


def wrap_ddp(
    model: nn.Module,
    device: torch.device,
    find_unused_parameters: bool = False,
    bucket_cap_mb: float = 25.0,
) -> nn.Module:
    """`DistributedDataParallel` around the model: gradients all-reduced during backward."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
        bucket_cap_mb=bucket_cap_mb,
        gradient_as_bucket_view=True,
    )
