"""LoRA: fine-tune a GPT by training low-rank updates beside frozen weights (Hu et al., 2021).

Each targeted linear layer W becomes W x + (alpha / rank) · B A x, with A [rank, in] random and
B [out, rank] zero, so training starts exactly at the pretrained model and only A and B (a small
fraction of the parameters) learn. `merge_lora` folds B A back into W, which is what export
writes: the exported model is a plain GPT that loads anywhere.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator

import torch
from pydantic import Field
from torch import nn

from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError

TARGETS = ("attn.qkv", "attn.proj", "mlp.up", "mlp.down")


class LoRAConfig(ComponentConfig):
    """Which layers get adapters, and their size."""

    rank: int = Field(8, ge=1, description="rank of each update")
    alpha: float = Field(16.0, gt=0, description="updates are scaled by alpha / rank")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter input")
    targets: list[str] = Field(["attn.qkv", "attn.proj"], description=f"any of {TARGETS}")
    train_embeddings: bool = Field(False, description="also train the token embedding")


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus a trainable low-rank update."""

    enabled = True  # False: the base layer alone (`adapters_disabled`)

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.base = base
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / rank
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return self.base(x)
        update = self.drop(x) @ self.lora_a.t().to(x.dtype) @ self.lora_b.t().to(x.dtype)
        return self.base(x) + update * self.scale

    def merged(self) -> nn.Linear:
        """A plain linear layer computing the same function."""
        linear = copy.deepcopy(self.base)
        with torch.no_grad():
            linear.weight += self.scale * (self.lora_b @ self.lora_a).to(linear.weight.dtype)
        linear.weight.requires_grad_(True)
        return linear


def apply_lora(model: nn.Module, config: LoRAConfig) -> int:
    """Freeze `model` and wrap every targeted linear layer; returns how many were wrapped."""
    unknown = sorted(set(config.targets) - set(TARGETS))
    if unknown:
        raise ConfigError(f"model.lora.targets: unknown {unknown}; accepted: {list(TARGETS)}.")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    wrapped = 0
    for block in model.blocks:
        for target in config.targets:
            owner_name, attribute = target.split(".")
            owner = getattr(block, owner_name)
            adapter = LoRALinear(
                getattr(owner, attribute), config.rank, config.alpha, config.dropout
            )
            setattr(owner, attribute, adapter)
            wrapped += 1
    if config.train_embeddings:
        model.embed.weight.requires_grad_(True)
    return wrapped


@contextlib.contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """Inside, every LoRA layer computes its frozen base alone: the model before fine-tuning
    (DPO's reference model at no extra memory)."""
    adapters = [m for m in model.modules() if isinstance(m, LoRALinear)]
    for adapter in adapters:
        adapter.enabled = False
    try:
        yield
    finally:
        for adapter in adapters:
            adapter.enabled = True


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoRALinear) for m in model.modules())


def merge_lora(model: nn.Module) -> nn.Module:
    """A copy of `model` with every adapter folded into its base layer."""
    merged = copy.deepcopy(model)
    for name, module in list(merged.named_modules()):
        if isinstance(module, LoRALinear):
            owner_name, _, attribute = name.rpartition(".")
            setattr(merged.get_submodule(owner_name), attribute, module.merged())
    for parameter in merged.parameters():
        parameter.requires_grad_(True)
    return merged
