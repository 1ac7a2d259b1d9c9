"""Lookahead (Zhang et al., 2019): k fast steps forward, then one step back towards slow weights.

Any optimizer (the fast one) takes its ordinary steps; after every k of them the slow weights
move a fraction alpha of the way to the fast weights, `slow <- slow + alpha (fast - slow)`, and
the fast weights restart from there. The CIFAR-10 speed runs (airbench) use the same update
every 5 steps with alpha falling over the run (`alpha_end`), which averages away the noise of a
high learning rate late in training. PyTorch has no Lookahead, so `LookaheadOptimizer` wraps
any `torch.optim.Optimizer`: it shares the base optimizer's param groups and state (schedulers
keep working) and its `state_dict` is the base's plus the slow weights and the step count, so a
resumed run continues exactly. It changes the math.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from tessera.algorithms.common import check_fields
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.errors import CheckpointError, ConfigError
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "lookahead"
__all__ = ["Lookahead", "LookaheadConfig", "LookaheadOptimizer", "lookahead_alpha"]

_KEY = "lookahead"  # the wrapper's entry in the optimizer state dict


class LookaheadConfig(ComponentConfig):
    k: int = Field(5, ge=1, description="fast steps between synchronisations")
    alpha: float = Field(
        0.5, gt=0.0, le=1.0, description="fraction of the way the slow weights move (at the start)"
    )
    alpha_end: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="alpha at the end of the run, reached along a cubic in progress (None: fixed)",
    )
    sync_at_end: bool = Field(True, description="end training on the slow weights (a last sync)")


def lookahead_alpha(alpha: float, alpha_end: float | None, progress: float) -> float:
    """The step fraction at `progress` (0 to 1) of the run: alpha, moving to alpha_end as
    progress cubed (most of the change comes late, as in airbench)."""
    check_fields(LookaheadConfig, NAME, alpha=alpha, alpha_end=alpha_end)
    if alpha_end is None:
        return alpha
    return alpha + (alpha_end - alpha) * min(max(progress, 0.0), 1.0) ** 3


class LookaheadOptimizer(torch.optim.Optimizer):
    """Wraps `base`; shares its param groups and state; keeps the slow weights itself."""

    def __init__(self, base: torch.optim.Optimizer, k: int = 5, alpha: float = 0.5) -> None:
        check_fields(LookaheadConfig, NAME, k=k, alpha=alpha)
        super().__init__(base.param_groups, base.defaults)
        self.base = base
        self.param_groups = base.param_groups
        self.state = base.state
        self.k, self.alpha = k, alpha
        self.steps = 0
        self.slow: list[torch.Tensor] | None = None  # one per parameter, in group order

    @property
    def needs_closure(self) -> bool:  # the trainer passes a closure if the base wants one
        return bool(getattr(self.base, "needs_closure", False))

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        if self.slow is None:  # the weights before the first step are the first slow weights
            self.slow = [p.detach().clone() for p in self._params()]
        loss = self.base.step(closure) if closure is not None else self.base.step()
        self.steps += 1
        if self.steps % self.k == 0:
            self.synchronize()
        return loss

    @torch.no_grad()
    def synchronize(self, alpha: float | None = None) -> None:
        """slow <- slow + alpha (fast - slow); fast <- slow."""
        params = self._params()
        if self.slow is None:
            self.slow = [p.detach().clone() for p in params]
            return
        if len(self.slow) != len(params):
            raise ConfigError(
                f"algorithm '{NAME}': the optimizer now holds {len(params)} parameters but "
                f"Lookahead has slow weights for {len(self.slow)}; apply model changes that "
                "add or remove parameters before Lookahead wraps the optimizer"
            )
        weight = self.alpha if alpha is None else alpha
        torch._foreach_lerp_(self.slow, [p.detach() for p in params], weight)
        torch._foreach_copy_([p.detach() for p in params], self.slow)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if getattr(self, "slow", None) is not None:
            raise ConfigError(
                f"algorithm '{NAME}': parameters cannot join the optimizer after training "
                "started; add them before the first step"
            )
        if hasattr(self, "base"):
            self.base.add_param_group(param_group)
        else:  # torch.optim.Optimizer.__init__ adds the base's groups while building
            super().add_param_group(param_group)

    def state_dict(self) -> dict[str, Any]:
        state = self.base.state_dict()
        state[_KEY] = {"steps": self.steps, "slow": self.slow}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        mine = state.pop(_KEY, None)
        if mine is None:
            raise CheckpointError(
                "this checkpoint's optimizer was not wrapped by Lookahead (no slow weights); "
                "resume with the configuration it was saved with"
            )
        self.base.load_state_dict(state)
        # torch's load gives the base new state and group containers: share them again.
        self.state, self.param_groups = self.base.state, self.base.param_groups
        self.steps = int(mine["steps"])
        slow = mine["slow"]
        if slow is None:
            self.slow = None
            return
        params = self._params()
        if len(slow) != len(params):
            raise CheckpointError(
                f"the checkpoint holds Lookahead slow weights for {len(slow)} parameters but "
                f"this optimizer has {len(params)}; resume with the same model"
            )
        self.slow = [s.to(device=p.device, dtype=p.dtype).clone() for s, p in zip(slow, params)]


def _refuse_sharded(state: State) -> None:
    """The slow weights are checkpointed in the single-file format only: refuse FSDP shards."""
    if not torch.distributed.is_available():
        return
    from torch.distributed.tensor import DTensor

    if any(isinstance(p, DTensor) for p in state.model.parameters()):
        raise ConfigError(
            f"algorithm '{NAME}' does not support sharded (FSDP) parameters: its slow weights "
            "are saved in single-file checkpoints only; use parallelism.strategy 'ddp', or "
            "remove lookahead"
        )


class Lookahead(Algorithm):
    """Wrap `state.optimizers[0]` in a `LookaheadOptimizer` at INIT."""

    name = NAME
    Config = LookaheadConfig
    runs_after = ("batchnorm_groups", "fused_optimizer", "sam", "squeeze_excite", "factorize")

    def __init__(self, config: LookaheadConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.wrapper: LookaheadOptimizer | None = None

    def match(self, event: Event, state: State) -> bool:
        return event in (Event.INIT, Event.FIT_START, Event.BEFORE_OPTIMIZER_STEP, Event.FIT_END)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        c = self.config
        if event == Event.INIT:
            if not state.optimizers:
                raise ConfigError(f"algorithm '{NAME}' wraps the optimizer, but the run has none")
            current = state.optimizers[0]
            if isinstance(current, LookaheadOptimizer):
                self.wrapper = current
            else:
                self.wrapper = LookaheadOptimizer(current, c.k, c.alpha)
                state.optimizers[0] = self.wrapper
        elif self.wrapper is None:
            return
        elif event == Event.FIT_START:
            _refuse_sharded(state)
        elif event == Event.BEFORE_OPTIMIZER_STEP and c.alpha_end is not None:
            self.wrapper.alpha = lookahead_alpha(c.alpha, c.alpha_end, state.progress())
        elif event == Event.FIT_END and c.sync_at_end and self.wrapper.steps % c.k:
            self.wrapper.synchronize()
