"""`GPT`: the decoder-only transformer, implementing the trainer's `TrainableModel` directly.

Training batches are dicts `{"input_ids": LongTensor[B, T + 1]}` (optionally `"labels"` of the
same shape, -100 where no loss is wanted): the network reads the first T tokens and is scored on
predicting the last T, so a packed sequence of T + 1 tokens trains T predictions and the model's
`max_seq_len` is T. `run()` is the plain network call used by generation and export tests.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tessera.core.errors import UserError
from tessera.core.model import TrainableModel
from tessera.models.gpt.cache import KVCache
from tessera.models.gpt.config import GPTConfig
from tessera.models.gpt.layers import (
    Block,
    alibi_slopes,
    make_norm,
    rope_tables,
    uses_value_embedding,
)
from tessera.models.gpt.metrics import TokenLoss

EXPORT_FORMAT = "tessera-gpt"
# Weights `zero_init_projections` starts at zero (the head only when untied from the embedding).
ZERO_INIT = ("attn.proj.weight", "mlp.down.weight", "lm_head.weight")


class GPT(TrainableModel):
    """A GPT-2 or Llama/MPT style language model built from a `GPTConfig`."""

    # A chat template (`tessera.serve.chat_template.ChatTemplate`) the model was given, and,
    # for a model imported from Hugging Face, that folder's config and tokenizer files
    # (`hf_import`), which export writes back. Both travel in the exported config.json.
    chat_template: Any = None
    hf_origin: dict[str, Any] | None = None

    def __init__(self, config: GPTConfig, tokenizer: Any = None) -> None:
        super().__init__()
        if config.vocab_size is None:
            raise UserError("model.vocab_size: not set and no tokenizer given to take it from.")
        self.config = config
        self.tokenizer = tokenizer
        self._vocab_checked = False
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        if config.position == "learned":
            self.pos_embed = nn.Embedding(config.max_seq_len, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        if config.value_embeddings:
            self.value_embeds = nn.ModuleList(
                nn.Embedding(config.vocab_size, config.kv_heads * config.head_dim)
                for _ in range(config.value_embeddings)
            )
        if config.unet_skips:
            self.skip_weights = nn.Parameter(torch.ones(config.n_layer // 2))
        self.norm = make_norm(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        if config.position == "rope":
            cos, sin = rope_tables(
                config.head_dim, config.max_seq_len, config.rope_theta, config.rope_scaling
            )
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        if config.position == "alibi":
            self.register_buffer("alibi", alibi_slopes(config.n_head), persistent=False)
        self.reset_parameters()

    # -- initialisation ----------------------------------------------------------------------

    def reset_parameters(self) -> None:
        """Initialise weights by `config.init`: 'gpt2' (std 0.02, residual outputs scaled by
        1/sqrt(2·n_layer)), 'normal' (std everywhere) or 'small' (std sqrt(2/(5·d)), scaled)."""
        config = self.config
        std = math.sqrt(2 / (5 * config.d_model)) if config.init == "small" else config.init_std
        residual_std = std if config.init == "normal" else std / math.sqrt(2 * config.n_layer)
        for name, param in self.named_parameters():
            if param.device.type == "meta":
                continue
            if name.endswith("bias"):
                nn.init.zeros_(param)
            elif name.endswith("value_mix"):
                nn.init.constant_(param, 0.5)
            elif param.dim() == 1:
                nn.init.ones_(param)
            elif config.zero_init_projections and name.endswith(ZERO_INIT):
                nn.init.zeros_(param)
            elif name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(param, 0.0, residual_std)
            else:
                nn.init.normal_(param, 0.0, std)

    # -- the network ------------------------------------------------------------------------

    def run(
        self,
        input_ids: torch.Tensor,
        cache: KVCache | None = None,
        attention_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [B, T, vocab] for `input_ids` [B, T].

        With a `cache`, the tokens continue the cached ones. `attention_mask` [B, slots so far]
        marks real tokens (False for left padding); positions then count real tokens only.

        `positions` [B, T] instead gives every token's position, for a cache whose rows hold
        sequences of different lengths, each token's keys at the slot of its position (the
        serving engine's slot cache, with `key_length` and `update`): a token then attends to
        the cached slots up to its own position, and the cache is not advanced.
        """
        if positions is not None:
            mask = self._position_mask(positions, cache.key_length)
            return self._network(input_ids, positions, mask, cache)
        length = input_ids.shape[1]
        start = cache.length if cache is not None else 0
        end = start + length
        self._check_length(end, cache)
        device = input_ids.device
        if attention_mask is not None:
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, start:end]
        else:
            positions = torch.arange(start, end, device=device).unsqueeze(0)
        mask = self._attention_mask(length, start, attention_mask, device, cache is not None)
        logits = self._network(input_ids, positions, mask, cache)
        if cache is not None:
            cache.advance(length)
        return logits

    def _network(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor | None,
        cache: Any,
    ) -> torch.Tensor:
        return self.soft_cap(self.lm_head(self._features(input_ids, positions, mask, cache)))

    def _features(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor | None,
        cache: Any,
    ) -> torch.Tensor:
        """The final normed hidden states [B, T, d_model] (what the output layer reads)."""
        x = self.embed(input_ids)
        if self.config.position == "learned":
            x = x + self.pos_embed(positions)
        x = self.drop(x)
        device = x.device.type
        if self.config.autocast_residual and torch.is_autocast_enabled(device):
            x = x.to(torch.get_autocast_dtype(device))  # the blocks' outputs keep this dtype
        rope = None
        if self.config.position == "rope":
            rope = (self.rope_cos[positions].unsqueeze(1), self.rope_sin[positions].unsqueeze(1))
        tables = [table(input_ids) for table in getattr(self, "value_embeds", ())]
        skips: list[torch.Tensor] = []
        half = self.config.n_layer // 2 if self.config.unet_skips else 0
        for index, block in enumerate(self.blocks):
            if index >= self.config.n_layer - half:  # U-net: the mirror block's output
                x = x + self.skip_weights[index - (self.config.n_layer - half)] * skips.pop()
            table = uses_value_embedding(self.config, index)
            x = block(x, rope, mask, cache, None if table is None else tables[table])
            if index < half:
                skips.append(x)
        return self.norm(x)

    def soft_cap(self, logits: torch.Tensor) -> torch.Tensor:
        """`logit_softcap` c: logits squashed smoothly into (-c, c) as c·tanh(logits/c)."""
        cap = self.config.logit_softcap
        if cap is None:
            return logits
        return cap * torch.tanh(logits.float() / cap)

    def _check_length(self, end: int, cache: KVCache | None) -> None:
        if end > self.config.max_seq_len:
            raise UserError(
                f"sequence of {end} tokens is longer than the model's max_seq_len "
                f"({self.config.max_seq_len}); shorten the prompt/sequence or train a model with "
                "a larger max_seq_len."
            )
        if cache is not None and end > cache.capacity:
            raise UserError(f"KV cache holds {cache.capacity} tokens; {end} were asked for.")

    def _attention_mask(
        self,
        length: int,
        start: int,
        valid: torch.Tensor | None,
        device: torch.device,
        cached: bool = False,
    ) -> torch.Tensor | None:
        """None when SDPA's own causal mask is exact (no cache offset, padding or ALiBi), or
        when a sliding window trains through FlexAttention; otherwise a bool mask, or ALiBi's
        float bias, of shape [B or 1, H or 1, T, slots]."""
        alibi, window = self.config.position == "alibi", self.config.attention_window
        if start == 0 and valid is None and not alibi and (window is None or not cached):
            return None
        query_slots = torch.arange(start, start + length, device=device).unsqueeze(1)
        key_slots = torch.arange(start + length, device=device).unsqueeze(0)
        allowed = key_slots <= query_slots
        if window is not None:
            allowed = allowed & (query_slots - key_slots < window)
        allowed = allowed.unsqueeze(0).unsqueeze(0)
        if valid is not None:
            allowed = allowed & valid[:, None, None, : start + length]
            allowed = allowed | (key_slots == query_slots)  # a padding row still sees itself
        if not alibi:
            return allowed
        distance = (key_slots - query_slots).float()
        bias = self.alibi.view(-1, 1, 1) * distance  # [H, T, slots]: 0 on the diagonal
        return bias.unsqueeze(0).masked_fill(~allowed, float("-inf"))

    def _position_mask(self, positions: torch.Tensor, key_length: int) -> torch.Tensor:
        """Bool mask (or ALiBi's float bias) [B, 1 or H, T, key_length]: key slot j is seen by
        a token at position p when j <= p."""
        key_slots = torch.arange(key_length, device=positions.device)
        distance = key_slots.view(1, 1, 1, -1) - positions[:, None, :, None]
        allowed = distance <= 0
        if self.config.attention_window is not None:
            allowed = allowed & (distance > -self.config.attention_window)
        if self.config.position != "alibi":
            return allowed
        bias = self.alibi.view(1, -1, 1, 1) * distance.float()
        return bias.masked_fill(~allowed, float("-inf"))

    def new_cache(
        self, batch_size: int, capacity: int | None = None, dtype: torch.dtype | None = None
    ) -> KVCache:
        """An empty KV cache for `batch_size` sequences of up to `capacity` tokens."""
        weight = self.embed.weight
        return KVCache(
            self.config.n_layer,
            batch_size,
            self.config.kv_heads,
            self.config.head_dim,
            capacity or self.config.max_seq_len,
            weight.device,
            dtype or weight.dtype,
        )

    # -- the TrainableModel interface ---------------------------------------------------------

    def forward(self, batch: dict[str, torch.Tensor]) -> Any:
        """Logits [B, T, vocab]; `{"features": [B, T, d]}` when `loss_chunk_tokens` is set
        (the loss applies the output layer chunk by chunk). A `segment_ids` entry [B, T + 1]
        marks packed documents, which then attend only to themselves."""
        ids = _input_ids(batch)
        if not self._vocab_checked and not torch.compiler.is_compiling():
            self._check_vocab(ids)  # one host sync, on the first batch only
        segments = batch.get("segment_ids") if isinstance(batch, dict) else None
        if segments is None and self.config.loss_chunk_tokens is None:
            return self.run(ids[:, :-1])
        features = self.packed_features(ids[:, :-1], None if segments is None else segments[:, :-1])
        if self.config.loss_chunk_tokens is None:
            return self.soft_cap(self.lm_head(features))
        return {"features": features}

    def packed_features(
        self, input_ids: torch.Tensor, segment_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Final hidden states [B, T, d] of rows that may hold several documents each."""
        length = input_ids.shape[1]
        self._check_length(length, None)
        if segment_ids is None:
            positions = torch.arange(length, device=input_ids.device).unsqueeze(0)
            return self._features(
                input_ids, positions, self._attention_mask(length, 0, None, input_ids.device), None
            )
        from tessera.models.gpt.documents import document_mask, document_positions

        positions, mask = document_positions(segment_ids), document_mask(segment_ids)
        if self.config.position == "alibi":
            index = torch.arange(length, device=input_ids.device, dtype=torch.float32)
            bias = self.alibi.view(1, -1, 1, 1) * (index.view(1, -1) - index.view(-1, 1))
            mask = bias.masked_fill(~mask, float("-inf"))
        return self._features(input_ids, positions, mask, None)

    def _check_vocab(self, ids: torch.Tensor) -> None:
        largest = int(ids.max())
        if largest >= self.config.vocab_size or int(ids.min()) < 0:
            raise UserError(
                f"the data holds token id {largest} but the model's vocab_size is "
                f"{self.config.vocab_size}: the data was tokenized with another tokenizer; "
                "use the same tokenizer for model and data (or a larger vocab_size)."
            )
        self._vocab_checked = True

    def loss(self, outputs: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        targets = _targets(batch)
        if isinstance(outputs, dict):  # features: the output layer runs chunk by chunk
            from tessera.models.gpt.losses import linear_cross_entropy

            chunk = self.config.loss_chunk_tokens or targets.numel()
            return linear_cross_entropy(outputs["features"], self.lm_head.weight, targets, chunk)
        return F.cross_entropy(outputs.float().flatten(0, 1), targets.flatten(), ignore_index=-100)

    def eval_forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-token negative log-likelihood and which tokens count, for the LM metrics."""
        outputs = self(batch)
        targets = _targets(batch)
        if isinstance(outputs, dict):
            from tessera.models.gpt.losses import token_logprobs

            chunk = self.config.loss_chunk_tokens
            nll = -token_logprobs(outputs["features"], self.lm_head.weight, targets, chunk)
            return {"nll": nll, "mask": targets != -100}
        nll = F.cross_entropy(
            outputs.float().flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="none"
        )
        return {"nll": nll.view_as(targets), "mask": targets != -100}

    def metrics(self, train: bool = False) -> dict[str, Any]:
        if train:
            return {}
        metrics = {"loss": TokenLoss("loss"), "perplexity": TokenLoss("perplexity")}
        if getattr(self.tokenizer, "kind", None) in ("char", "byte"):
            metrics["bits_per_char"] = TokenLoss("bits")
        return metrics

    def update_metric(self, batch: Any, outputs: Any, metric: Any) -> None:
        if not isinstance(outputs, dict):
            outputs = self.eval_forward(batch)
        metric.update(outputs["nll"], outputs["mask"])

    def num_samples(self, batch: dict[str, torch.Tensor]) -> int:
        return _input_ids(batch).shape[0]

    def num_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        batch_size, length = _input_ids(batch).shape
        return batch_size * (length - 1)

    def flops_per_batch(self, batch: dict[str, torch.Tensor]) -> float:
        length = _input_ids(batch).shape[1] - 1
        return self.num_tokens(batch) * self.config.flops_per_token(length)

    def network(self) -> nn.Module:
        """What export writes: this model, with any LoRA adapters merged into plain layers."""
        from tessera.models.gpt.lora import has_lora, merge_lora

        return merge_lora(self) if has_lora(self) else self

    def export_config(self) -> dict[str, Any]:
        shape = self.config.model_dump(exclude={"preset", "tokenizer"})
        tokenizer = self.tokenizer.to_dict() if self.tokenizer is not None else None
        exported = {"format": EXPORT_FORMAT, "version": 1, "model": shape, "tokenizer": tokenizer}
        if self.chat_template is not None:
            exported["chat_template"] = self.chat_template.to_dict()
        if self.hf_origin is not None:
            exported["hf_origin"] = self.hf_origin
        return exported


def _input_ids(batch: Any) -> torch.Tensor:
    if isinstance(batch, dict):
        return batch["input_ids"]
    if isinstance(batch, torch.Tensor):
        return batch
    raise TypeError(f"a GPT batch is a dict with 'input_ids', not {type(batch).__name__}")


def _targets(batch: Any) -> torch.Tensor:
    labels = batch.get("labels") if isinstance(batch, dict) else None
    return (labels if labels is not None else _input_ids(batch))[:, 1:]
