"""MixUp (Zhang et al., 2018): train on convex combinations of pairs of samples.

Each microbatch is mixed with a shuffled copy of itself, `x = lam * x + (1 - lam) * x[perm]`,
and the loss becomes `lam * loss(y) + (1 - lam) * loss(y[perm])`. It changes the math (a
regulariser); it usually needs more epochs to pay off, so it belongs to longer recipes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from tessera.algorithms.common import check_fields, inputs_and_targets, with_inputs, with_targets
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "mixup"
__all__ = ["MixUp", "MixUpConfig", "mixup_batch", "sample_mixing_weight"]


class MixUpConfig(ComponentConfig):
    alpha: float = Field(
        0.2, gt=0.0, description="lam ~ Beta(alpha, alpha); small alpha keeps lam near 0 or 1"
    )


def sample_mixing_weight(alpha: float, generator: torch.Generator | None = None) -> float:
    """lam ~ Beta(alpha, alpha), drawn from torch's RNG so checkpoints restore it."""
    gammas = torch._standard_gamma(torch.full((2,), float(alpha)), generator=generator)
    return float(gammas[0] / gammas.sum())


def mixup_batch(
    inputs: torch.Tensor,
    targets: Any,
    alpha: float = 0.2,
    mixing: float | None = None,
    permutation: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, Any, Any, float]:
    """Mix a batch with a permutation of itself.

    Returns (mixed inputs, targets, permuted targets, lam): the loss is
    `lam * loss(targets) + (1 - lam) * loss(permuted targets)`.
    """
    check_fields(MixUpConfig, NAME, alpha=alpha)
    lam = sample_mixing_weight(alpha, generator) if mixing is None else float(mixing)
    if permutation is None:
        permutation = torch.randperm(inputs.shape[0], generator=generator).to(inputs.device)
    mixed = inputs * lam + inputs[permutation] * (1.0 - lam)
    return mixed, targets, targets[permutation], lam


class MixingAlgorithm(Algorithm):
    """Shared logic of MixUp and CutMix: mix inputs before forward, mix the loss after it.

    Each microbatch's lam is logged as `<name>/lambda`."""

    def __init__(self, config: ComponentConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.permuted_targets: Any = None  # of the latest microbatch (kept for inspection)
        self.mixing = 1.0
        self._pending = False

    def mix(self, inputs: torch.Tensor, targets: Any) -> tuple[torch.Tensor, Any, float]:
        raise NotImplementedError

    def match(self, event: Event, state: State) -> bool:
        return event in (Event.BEFORE_FORWARD, Event.AFTER_LOSS)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.BEFORE_FORWARD:
            inputs, targets = inputs_and_targets(state.batch, self.name)
            mixed, permuted, lam = self.mix(inputs, targets)
            state.batch = with_inputs(state.batch, mixed)
            self.permuted_targets, self.mixing, self._pending = permuted, lam, True
            logger.log_metrics({f"{self.name}/lambda": lam}, state.timestamp.batch)
            return
        if not self._pending:
            return
        batch = with_targets(state.batch, self.permuted_targets)
        other = state.unwrapped_model.loss(state.outputs, batch)
        state.loss = self.mixing * state.loss + (1.0 - self.mixing) * other
        self._pending = False


class MixUp(MixingAlgorithm):
    name = NAME
    Config = MixUpConfig
    conflicts = ("cutmix",)
    runs_after = ("progressive_resizing", "randaugment", "augmix", "colout", "cutout")

    def mix(self, inputs: torch.Tensor, targets: Any) -> tuple[torch.Tensor, Any, float]:
        mixed, _, permuted, lam = mixup_batch(inputs, targets, self.config.alpha)
        return mixed, permuted, lam
