"""Direct Preference Optimization (Rafailov et al., 2023): tune a GPT on preference pairs.

For a prompt x with a chosen answer y_w and a rejected one y_l, the policy π and a fixed
reference model π_ref score each answer by its summed log-probability; the loss is

    -log sigmoid(β · [(log π(y_w|x) - log π_ref(y_w|x)) - (log π(y_l|x) - log π_ref(y_l|x))])

β · (log π - log π_ref) is each answer's implicit reward; evaluation reports the loss, the
share of pairs whose chosen answer has the larger reward (`reward_accuracy`) and the mean
difference (`reward_margin`). The reference is a frozen copy of the starting model, the same
model with its LoRA adapters switched off (no second copy in memory), or log-probabilities
precomputed in the data. The reference copy is not part of the model's state: checkpoints
and the exported model hold the policy alone, a plain GPT.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from tessera.core.errors import ConfigError
from tessera.core.model import TrainableModel
from tessera.core.registry import builder
from tessera.models.gpt.lora import adapters_disabled, apply_lora
from tessera.models.gpt.losses import token_logprobs
from tessera.models.gpt.model import GPT
from tessera.models.gpt.registration import GPTRecipeConfig, build_gpt

Reference = Literal["auto", "frozen", "adapters_off", "precomputed"]
STATISTICS = ("loss", "reward_accuracy", "reward_margin", "chosen_reward", "rejected_reward")


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Mean DPO loss over pairs, from summed log-probabilities [pairs] of each answer."""
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    return -F.logsigmoid(beta * margin).mean()


def sequence_logprobs(model: GPT, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed log-probability [B] of each row's labelled tokens (rows of T + 1 tokens)."""
    features = model.packed_features(input_ids[:, :-1])
    targets = labels[:, 1:]
    logprobs = token_logprobs(
        features, model.lm_head.weight, targets, model.config.loss_chunk_tokens
    )
    return logprobs.sum(dim=-1)


class DPO(TrainableModel):
    """A GPT policy trained with the DPO loss against a reference."""

    def __init__(self, policy: GPT, beta: float, reference: str, frozen: GPT | None = None) -> None:
        super().__init__()
        self.policy = policy
        self.beta = beta
        self.reference = reference
        object.__setattr__(self, "_frozen", frozen)  # not a submodule: not in the state
        if frozen is not None:
            frozen.requires_grad_(False).eval()

    @property
    def tokenizer(self) -> Any:
        return self.policy.tokenizer

    def _apply(self, fn: Any, recurse: bool = True) -> DPO:  # moves the reference along
        super()._apply(fn, recurse)
        if self._frozen is not None:
            self._frozen._apply(fn, recurse)
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pairs = batch["chosen_input_ids"].shape[0]
        ids = torch.cat([batch["chosen_input_ids"], batch["rejected_input_ids"]])
        labels = torch.cat([batch["chosen_labels"], batch["rejected_labels"]])
        policy = sequence_logprobs(self.policy, ids, labels)
        reference = self._reference_logprobs(batch, ids, labels)
        return {
            "policy_chosen": policy[:pairs],
            "policy_rejected": policy[pairs:],
            "reference_chosen": reference[:pairs],
            "reference_rejected": reference[pairs:],
        }

    @torch.no_grad()
    def _reference_logprobs(
        self, batch: dict[str, torch.Tensor], ids: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        if self.reference == "precomputed":
            if "reference_chosen_logps" not in batch:
                raise ConfigError(
                    "model.reference: 'precomputed' needs reference_chosen_logp and "
                    "reference_rejected_logp in every data record."
                )
            return torch.cat(
                [batch["reference_chosen_logps"], batch["reference_rejected_logps"]]
            ).float()
        if self.reference == "adapters_off":
            with adapters_disabled(self.policy):
                return sequence_logprobs(self.policy, ids, labels)
        return sequence_logprobs(self._frozen, ids, labels)  # type: ignore[arg-type]

    def loss(self, outputs: dict[str, torch.Tensor], batch: Any) -> torch.Tensor:
        return dpo_loss(
            outputs["policy_chosen"],
            outputs["policy_rejected"],
            outputs["reference_chosen"],
            outputs["reference_rejected"],
            self.beta,
        )

    def statistics(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-pair loss, rewards, margin and whether the chosen answer wins."""
        chosen = self.beta * (outputs["policy_chosen"] - outputs["reference_chosen"]).float()
        rejected = self.beta * (outputs["policy_rejected"] - outputs["reference_rejected"]).float()
        return {
            "loss": -F.logsigmoid(chosen - rejected),
            "reward_accuracy": (chosen > rejected).float(),
            "reward_margin": chosen - rejected,
            "chosen_reward": chosen,
            "rejected_reward": rejected,
        }

    def metrics(self, train: bool = False) -> dict[str, Any]:
        return {} if train else {name: _pair_mean(name) for name in STATISTICS}

    def update_metric(self, batch: Any, outputs: Any, metric: Any) -> None:
        metric.update(self.statistics(outputs)[metric.statistic])

    def num_samples(self, batch: dict[str, torch.Tensor]) -> int:
        return batch["chosen_input_ids"].shape[0]

    def num_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        pairs, width = batch["chosen_input_ids"].shape
        return 2 * pairs * (width - 1)

    def flops_per_batch(self, batch: dict[str, torch.Tensor]) -> float:
        """The policy's training FLOPs on both answers plus the reference's forward (a third)."""
        length = batch["chosen_input_ids"].shape[1] - 1
        training = self.num_tokens(batch) * self.policy.config.flops_per_token(length)
        return training * (1 + (1 / 3 if self.reference != "precomputed" else 0))

    def network(self) -> nn.Module:
        return self.policy.network()

    def export_config(self) -> dict[str, Any]:
        return self.policy.export_config()


def _pair_mean(statistic: str) -> Any:
    """A mean over all evaluated pairs of one of `DPO.statistics`."""
    from torchmetrics import MeanMetric

    metric = MeanMetric()
    metric.statistic = statistic
    return metric


class DPOConfig(GPTRecipeConfig):
    """The policy (a GPT recipe: init_from, lora, ...) plus DPO's own options."""

    name: str = "dpo"
    beta: float = Field(0.1, gt=0, description="strength of the pull towards the reference")
    reference: Reference = Field(
        "auto",
        description="frozen (a copy of the starting model), adapters_off (the policy with its "
        "LoRA adapters off: no copy), precomputed (log-probabilities in the data); auto: "
        "adapters_off with LoRA, else frozen",
    )


@builder(DPOConfig)
def build_dpo(config: DPOConfig) -> DPO:
    reference = config.reference
    if reference == "auto":
        reference = "adapters_off" if config.lora is not None else "frozen"
    if reference == "adapters_off" and config.lora is None:
        raise ConfigError(
            "model.reference: 'adapters_off' uses the policy without its LoRA adapters, but "
            "model.lora is not set; add model.lora or use reference: frozen."
        )
    fields = config.model_dump(exclude={"beta", "reference", "name", "lora"})
    policy = build_gpt(GPTRecipeConfig.model_validate({**fields, "name": "gpt"}))
    frozen = copy.deepcopy(policy) if reference == "frozen" else None
    if config.lora is not None:
        apply_lora(policy, config.lora)
    return DPO(policy, config.beta, reference, frozen)
