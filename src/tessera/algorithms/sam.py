"""SAM, sharpness-aware minimisation (Foret et al., 2021): step from the worst nearby point.

Each SAM step takes the gradient g at the weights w, moves to w + rho * g / ||g||, computes the
gradient there (a second forward and backward through the trainer's closure), returns to w and
lets the base optimizer step with that second gradient. It costs a second pass every
`interval` steps (other steps are plain) and changes the math (it seeks flat minima).
The Algorithm wraps `state.optimizers[0]` at INIT in a `SAMOptimizer` whose `needs_closure`
tells the trainer to call `step(closure)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from tessera.algorithms.common import check_fields
from tessera.core.algorithm import Algorithm
from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError
from tessera.core.event import Event

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

NAME = "sam"
__all__ = ["SAM", "SAMConfig", "SAMOptimizer"]


class SAMConfig(ComponentConfig):
    rho: float = Field(0.05, gt=0.0, description="radius of the step to the worst nearby point")
    epsilon: float = Field(1e-12, gt=0.0, description="added to the gradient norm it divides by")
    interval: int = Field(
        1, ge=1, description="a SAM step every `interval` optimizer steps, plain steps between"
    )


class SAMOptimizer(torch.optim.Optimizer):
    """Wraps a base optimizer; shares its param groups and state (schedulers keep working)."""

    needs_closure = True

    def __init__(
        self,
        base: torch.optim.Optimizer,
        rho: float = 0.05,
        epsilon: float = 1e-12,
        interval: int = 1,
    ) -> None:
        check_fields(SAMConfig, NAME, rho=rho, epsilon=epsilon, interval=interval)
        super().__init__(base.param_groups, base.defaults)
        self.base = base
        self.param_groups = base.param_groups
        self.state = base.state
        self.rho, self.epsilon, self.interval = rho, epsilon, interval
        self.steps = 0

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> Any:  # type: ignore[override]
        self.steps += 1
        if closure is None or self.steps % self.interval != 0:
            return self.base.step()
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return self.base.step()
        grad_norm = torch.norm(torch.stack([p.grad.norm() for p in params]))
        scale = self.rho / (grad_norm + self.epsilon)
        offsets = []
        for p in params:
            offset = p.grad * scale
            p.add_(offset)
            offsets.append(offset)
        self.base.zero_grad(set_to_none=False)
        with torch.enable_grad():
            loss = closure()
        for p, offset in zip(params, offsets):
            p.sub_(offset)
        self.base.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base.load_state_dict(state_dict)


class SAM(Algorithm):
    name = NAME
    Config = SAMConfig
    runs_after = ("fused_optimizer", "squeeze_excite", "factorize")

    def __init__(self, config: SAMConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.wrapper: SAMOptimizer | None = None

    def match(self, event: Event, state: State) -> bool:
        return event == Event.INIT

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if not state.optimizers:
            raise ConfigError("algorithm 'sam' wraps the optimizer, but the run has none")
        if state.precision.value == "amp_fp16":  # the one precision with a gradient scaler
            raise ConfigError(
                f"algorithm 'sam' cannot run with precision '{state.precision.value}': PyTorch's "
                "gradient scaler does not accept the closure SAM's second pass needs; use "
                "precision 'amp_bf16' or 'fp32'"
            )
        if isinstance(state.optimizers[0], SAMOptimizer):
            self.wrapper = state.optimizers[0]
            return
        c = self.config
        self.wrapper = SAMOptimizer(state.optimizers[0], c.rho, c.epsilon, c.interval)
        state.optimizers[0] = self.wrapper

    def state_dict(self) -> dict[str, Any]:
        # The step count decides which steps are SAM steps (with interval > 1).
        return {"steps": self.wrapper.steps if self.wrapper is not None else 0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.wrapper is not None:
            self.wrapper.steps = int(state.get("steps", 0))
