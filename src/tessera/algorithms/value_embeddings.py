"""ValueEmbeddings (the modded-nanogpt speed runs): token embeddings added to attention values.

`count` extra embedding tables map each token straight to a value vector; block i and its
mirror block n_layer - count + i mix table i into their attention values as
`a·v + b·embedding(token)`, with learned weights a, b (starting at 0.5 each). The first and
last blocks get a direct, cheap path from the token identity, which the speed runs found worth
many steps for few FLOPs (a table lookup per token). New tables train with the token
embedding's parameter group, the mixing weights with the norms'. The config records
`value_embeddings: count`. It changes the math (a different network, more parameters).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from pydantic import Field
from torch import nn

from tessera.algorithms.common import check_fields
from tessera.algorithms.gpt_options import GPTOptionMethod, gpt_needing, record
from tessera.algorithms.surgery import add_parameters
from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError

if TYPE_CHECKING:
    from tessera.core.state import State

NAME = "value_embeddings"
__all__ = ["ValueEmbeddings", "ValueEmbeddingsConfig", "apply_value_embeddings"]


class ValueEmbeddingsConfig(ComponentConfig):
    count: int = Field(
        1, ge=1, description="tables: each serves one of the first and one of the last blocks"
    )


@torch.no_grad()
def apply_value_embeddings(
    model: nn.Module, count: int = 1, optimizers: list[torch.optim.Optimizer] | None = None
) -> int:
    """Give a GPT `count` value-embedding tables; returns the number of blocks served."""
    check_fields(ValueEmbeddingsConfig, NAME, count=count)
    gpt = gpt_needing(model, NAME, value_embeddings=count)
    if gpt is None:
        return 0
    from tessera.models.gpt.layers import uses_value_embedding

    config = gpt.config
    if gpt.config.value_embeddings:
        raise ConfigError(
            f"algorithm '{NAME}': the model already has {config.value_embeddings} value "
            "embeddings; set model.value_embeddings instead of adding more"
        )
    if 2 * count > config.n_layer:
        raise ConfigError(
            f"algorithm '{NAME}': count={count} needs at least {2 * count} blocks (the first and "
            f"last {count}); the model has {config.n_layer}"
        )
    new_config = config.model_copy(update={"value_embeddings": count})
    weight = gpt.embed.weight
    tables = nn.ModuleList(
        nn.Embedding(config.vocab_size, config.kv_heads * config.head_dim) for _ in range(count)
    ).to(weight.device, weight.dtype)
    for table in tables:
        nn.init.normal_(table.weight, 0.0, float(weight.std()))
    mixes = []
    for index, block in enumerate(gpt.blocks):
        if uses_value_embedding(new_config, index) is not None:
            block.attn.value_mix = nn.Parameter(torch.full((2,), 0.5, device=weight.device))
            mixes.append(block.attn.value_mix)
    gpt.value_embeds = tables
    add_parameters(optimizers or [], weight, list(tables.parameters()))
    add_parameters(optimizers or [], gpt.norm.weight, mixes)
    record(gpt, value_embeddings=count)
    return len(mixes)


class ValueEmbeddings(GPTOptionMethod):
    name = NAME
    Config = ValueEmbeddingsConfig
    option = "value_embeddings"

    def change(self, state: State) -> None:
        apply_value_embeddings(state.model, self.config.count, state.optimizers)
