"""ReLUSquared (So et al., 2021, "Primer"; the modded-nanogpt speed runs): relu(x)² MLPs.

Every GELU MLP `down(gelu(up(x)))` becomes `down(relu(up(x))²)`: the same weights and shapes,
a cheaper activation with a sparse, sharper response that reached a given loss in fewer steps
in Primer's search and in the GPT-2 speed runs. Gated (SwiGLU) MLPs are not changed (they
have another weight layout; the method then has nothing to act on). The config records
`mlp: relu2`. It changes the math.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from tessera.algorithms.alibi import find_gpt
from tessera.algorithms.common import warn_no_effect
from tessera.algorithms.gpt_options import GPTOptionMethod, record
from tessera.core.component import ComponentConfig

if TYPE_CHECKING:
    from tessera.core.state import State

NAME = "relu_squared"
__all__ = ["ReLUSquared", "ReLUSquaredConfig", "apply_relu_squared"]


class ReLUSquaredConfig(ComponentConfig):
    """No options."""


def apply_relu_squared(model: nn.Module) -> int:
    """Switch every GELU MLP of a GPT to ReLU²; returns the number of MLPs changed."""
    gpt = find_gpt(model, NAME)
    if gpt.config.mlp != "gelu":
        warn_no_effect(NAME, f"the model's MLPs are {gpt.config.mlp}, not GELU")
        return 0
    for block in gpt.blocks:
        block.mlp.relu2 = True
    record(gpt, mlp="relu2")
    return len(gpt.blocks)


class ReLUSquared(GPTOptionMethod):
    name = NAME
    Config = ReLUSquaredConfig
    option = "mlp"
    conflicts = ("gated_linear_units",)

    def nothing_to_do(self, config: Any) -> str | None:
        return None if config.mlp == "gelu" else f"the model's MLPs are {config.mlp}, not GELU"

    def change(self, state: State) -> None:
        apply_relu_squared(state.model)
