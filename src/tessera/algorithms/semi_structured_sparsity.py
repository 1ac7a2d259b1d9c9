"""2:4 semi-structured sparsity: in every group of 4 weights along a row keep the 2 largest.

NVIDIA sparse tensor cores (Ampere and later) multiply a 2:4-sparse matrix about twice as fast
as a dense one by skipping the zeros, with half the weight memory. The Algorithm prunes every
eligible Linear weight to a 2:4 pattern at `start` (a fraction of the run), keeps the pattern
through the remaining training (fine-tuning recovers accuracy), and at FIT_END can convert the
weights to `torch.sparse.to_sparse_semi_structured` for fast inference on a supporting GPU.
It changes the math (half the weights of those layers are zero).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field
from torch import nn

from tessera.algorithms.common import check_fields, no_effect_error
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "semi_structured_sparsity"
__all__ = [
    "SemiStructuredSparsity",
    "SemiStructuredSparsityConfig",
    "apply_semi_structured_pruning",
    "semi_structured_mask",
    "to_semi_structured",
]


class SemiStructuredSparsityConfig(ComponentConfig):
    start: float = Field(
        0.5, ge=0.0, le=1.0, description="fraction of the run where the weights are pruned"
    )
    min_features: int = Field(
        64, ge=4, description="leave Linear layers with fewer input features alone"
    )
    convert_at_end: bool = Field(
        False,
        description="at the end, store the weights as sparse tensors (CUDA GPU, compute "
        "capability 8.0 or newer)",
    )


def semi_structured_mask(weight: torch.Tensor) -> torch.Tensor:
    """Boolean mask keeping the 2 largest-magnitude entries of each 4 consecutive in a row."""
    if weight.shape[-1] % 4:
        raise ConfigError(
            f"algorithm '{NAME}': a weight with {weight.shape[-1]} input features cannot take "
            "a 2:4 pattern; the input dimension must be a multiple of 4"
        )
    groups = weight.detach().abs().reshape(-1, 4)
    keep = groups.topk(2, dim=1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, keep, True)
    return mask.reshape(weight.shape)


def eligible_linears(model: nn.Module, min_features: int = 64) -> dict[str, nn.Linear]:
    """Linear layers whose sizes the sparse kernels accept (multiples of 64 on both sides)."""
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear)
        and m.in_features >= min_features
        and m.in_features % 64 == 0
        and m.out_features % 64 == 0
    }


@torch.no_grad()
def apply_semi_structured_pruning(model: nn.Module, min_features: int = 64) -> dict[str, Any]:
    """Prune every eligible Linear to 2:4 in place; returns the masks by layer name."""
    check_fields(SemiStructuredSparsityConfig, NAME, min_features=min_features)
    masks = {}
    for name, linear in eligible_linears(model, min_features).items():
        mask = semi_structured_mask(linear.weight)
        linear.weight.mul_(mask)
        masks[name] = mask
    return masks


def supports_semi_structured(device: torch.device) -> bool:
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability(device) >= (8, 0)


@torch.no_grad()
def to_semi_structured(model: nn.Module, min_features: int = 64) -> int:
    """Swap eligible (already 2:4-pruned, fp16/bf16, CUDA) Linear weights for sparse tensors."""
    from torch.sparse import to_sparse_semi_structured

    count = 0
    for linear in eligible_linears(model, min_features).values():
        weight = linear.weight
        if not supports_semi_structured(weight.device):
            raise ConfigError(
                f"algorithm '{NAME}': converting to semi-structured sparse tensors needs a CUDA "
                f"GPU of compute capability 8.0 or newer; the weights are on {weight.device}"
            )
        linear.weight = nn.Parameter(to_sparse_semi_structured(weight), requires_grad=False)
        count += 1
    return count


class SemiStructuredSparsity(Algorithm):
    name = NAME
    Config = SemiStructuredSparsityConfig
    conflicts = ("magnitude_pruning",)
    runs_after = ("squeeze_excite", "factorize")
    runs_before = ("ema", "swa")

    def __init__(
        self, config: SemiStructuredSparsityConfig | None = None, /, **options: Any
    ) -> None:
        super().__init__(config, **options)
        self.masks: dict[str, torch.Tensor] = {}

    def match(self, event: Event, state: State) -> bool:
        return event in (Event.FIT_START, Event.AFTER_OPTIMIZER_STEP, Event.FIT_END)

    @torch.no_grad()
    def apply(self, event: Event, state: State, logger: Logger) -> None:
        model = state.unwrapped_model
        c = self.config
        layers = eligible_linears(model, c.min_features)
        if event == Event.FIT_START:
            if not layers:
                raise no_effect_error(
                    NAME,
                    "the model has no Linear layer with both sides multiples of 64 "
                    f"(and >= {c.min_features} inputs)",
                )
            for name, mask in self.masks.items():
                layers[name].weight.mul_(mask.to(layers[name].weight.device))
            return
        if event == Event.FIT_END:
            if c.convert_at_end:
                to_semi_structured(model, c.min_features)
            return
        if not self.masks and state.progress() >= c.start:
            self.masks = apply_semi_structured_pruning(model, c.min_features)
            logger.log_metrics(
                {"semi_structured_sparsity/layers": len(self.masks)}, state.timestamp.batch
            )
        for name, mask in self.masks.items():
            layers[name].weight.mul_(mask)

    def state_dict(self) -> dict[str, Any]:
        return {"masks": dict(self.masks)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.masks = dict(state.get("masks") or {})
