"""Optimizers with decoupled weight decay, and parameter grouping.

Decoupled weight decay (Loshchilov & Hutter) shrinks weights by lr·wd directly instead of adding
wd·w to the gradient, so the decay does not interact with momentum or adaptive scaling.
`torch.optim.AdamW` already decouples; `SGDW` does the same for SGD with momentum.

`name: muon` is two optimizers: `torch.optim.Muon` (momentum, then the update orthogonalised
by Newton-Schulz iterations) for the 2-D weights of the hidden layers, and AdamW for the rest
(embeddings, the output head, norms, biases, scalars), each with its own learning rates. The
trainer steps both and schedules both (the schedule multiplies every group's own rate).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError
from tessera.optim.dynamo_deferral import defer_dynamo_import, eager_step

log = logging.getLogger(__name__)


class SGDW(torch.optim.SGD):
    """SGD (with momentum/Nesterov) and decoupled weight decay: w -= lr * weight_decay * w."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        dampening: float = 0.0,
        foreach: bool | None = None,
    ) -> None:
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self._default_decay = weight_decay
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=0.0,
            nesterov=nesterov,
            foreach=foreach,
        )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # A group's weight_decay is applied decoupled; SGD itself must see none.
        decay = param_group.pop("weight_decay", self._default_decay)
        param_group.setdefault("decoupled_weight_decay", decay)
        param_group["weight_decay"] = 0.0
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            decay = group["decoupled_weight_decay"]
            if decay:
                params = [p for p in group["params"] if p.grad is not None]
                if params:
                    torch._foreach_mul_(params, 1 - group["lr"] * decay)
        eager_step(self, torch.optim.SGD)
        return loss


class AdamW(torch.optim.AdamW):
    """Adam with decoupled weight decay (torch's implementation, named here for recipes)."""

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        return eager_step(self, torch.optim.AdamW, closure)


def parameter_roles(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters by role, each once (a tied head counts as its embedding):

    'embedding' (tables of `nn.Embedding` modules), 'head' (the weights of a module named
    `lm_head`, the output layer of Tessera's and Hugging Face's language models), 'matrix'
    (every other 2-D weight: the hidden layers) and 'other' (1-D norms, biases and scalars, and
    weights of other ranks such as convolutions).
    """
    roles: dict[str, list[nn.Parameter]] = {r: [] for r in ("embedding", "head", "matrix", "other")}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for parameter in module.parameters(recurse=False):
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            if isinstance(module, nn.Embedding):
                role = "embedding"
            elif module_name.rsplit(".", 1)[-1] == "lm_head":
                role = "head"
            else:
                role = "matrix" if parameter.ndim == 2 else "other"
            roles[role].append(parameter)
    return roles


def parameter_groups(
    model: nn.Module, weight_decay: float, decay_norm_and_bias: bool = False
) -> list[dict[str, Any]]:
    """Split parameters so biases and normalization weights (1-D) get no weight decay."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (decay if decay_norm_and_bias or parameter.ndim > 1 else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgdw": SGDW,
    "adamw": AdamW,
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
}
MUON_ONLY = ("adam_lr", "adjust_lr", "ns_steps")


class OptimizerConfig(ComponentConfig):
    """The recipe's `optimizer:` section (and the trainer's default optimizer)."""

    name: Literal["sgdw", "adamw", "sgd", "adam", "muon"] = Field(
        "sgdw", description="optimizer (muon: Muon for hidden matrices + AdamW for the rest)"
    )
    lr: float = Field(
        0.1, gt=0, allow_inf_nan=False, description="peak learning rate (muon: Muon's)"
    )
    weight_decay: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="weight decay (decoupled for sgdw/adamw)"
    )
    momentum: float | None = Field(None, ge=0, lt=1, description="momentum (SGD family)")
    nesterov: bool | None = Field(None, description="Nesterov momentum (SGD family)")
    betas: tuple[float, float] | None = Field(None, description="Adam betas")
    eps: float | None = Field(None, gt=0, description="Adam epsilon")
    decay_norm_and_bias: bool = Field(False, description="also decay 1-D params (norms, biases)")
    foreach: bool | None = Field(None, description="use the multi-tensor (foreach) kernels")
    embed_lr: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="embedding tables' lr (default: lr; muon: adam_lr)",
    )
    head_lr: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="output layer's lr (`lm_head`, when untied; default: lr; muon: adam_lr)",
    )
    adam_lr: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="muon: AdamW's lr for all but the matrices"
    )
    adjust_lr: Literal["original", "match_rms_adamw"] | None = Field(
        None, description="muon: per-shape lr scaling (torch's adjust_lr_fn; default original)"
    )
    ns_steps: int | None = Field(None, ge=1, description="muon: Newton-Schulz iterations (5)")

    @model_validator(mode="after")
    def _options_of_family(self) -> OptimizerConfig:
        adam = self.name in ("adamw", "adam")
        given = {
            key
            for key in ("momentum", "nesterov", "betas", "eps", *MUON_ONLY)
            if getattr(self, key) is not None
        }
        if self.name == "muon":
            if self.adam_lr is None:
                raise ValueError(
                    "muon needs adam_lr: the AdamW learning rate of the parameters Muon does "
                    "not take (embeddings, head, norms, biases), e.g. adam_lr: 0.003"
                )
            given = set()  # Muon takes momentum/nesterov, its AdamW part betas/eps
        wrong_muon = sorted(given & set(MUON_ONLY))
        if wrong_muon:
            raise ValueError(f"{', '.join(wrong_muon)} only apply to muon, not {self.name}")
        wrong = given & ({"momentum", "nesterov"} if adam else {"betas", "eps"})
        if wrong:
            use = "betas/eps" if adam else "momentum/nesterov"
            raise ValueError(f"{', '.join(sorted(wrong))} do not apply to {self.name}; use {use}")
        if self.betas is not None and not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError(f"betas {self.betas} must each be in [0, 1)")
        return self

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimizer over `model`'s trainable parameters (no decay on 1-D ones by default).
        `muon` is two optimizers: use `build_all`."""
        if self.name == "muon":
            raise ValueError("optimizer 'muon' is Muon plus AdamW: build it with build_all()")
        defer_dynamo_import()  # seconds of start-up where nothing is compiled
        if self.embed_lr is None and self.head_lr is None:
            groups = parameter_groups(model, self.weight_decay, self.decay_norm_and_bias)
        else:
            groups = self._role_groups(parameter_roles(model), self.lr, with_matrices=True)
        options: dict[str, Any] = {"lr": self.lr}
        for key in ("momentum", "nesterov", "betas", "eps", "foreach"):
            value = getattr(self, key)
            if value is not None:
                options[key] = value
        return OPTIMIZERS[self.name](groups, **options)

    def build_all(self, model: nn.Module) -> list[torch.optim.Optimizer]:
        """Every optimizer this section makes: one, or for `muon` Muon and AdamW."""
        if self.name != "muon":
            return [self.build(model)]
        defer_dynamo_import()  # seconds of start-up where nothing is compiled
        roles = parameter_roles(model)
        if not roles["matrix"]:
            raise ConfigError(
                "optimizer.name: muon found no 2-D hidden-layer weights to optimize in "
                f"{type(model).__name__}; use adamw"
            )
        shaped = [p for p in roles["other"] if p.ndim > 2]
        if shaped:
            log.warning(
                "optimizer muon: %d weights of rank > 2 (e.g. convolutions) go to AdamW, as "
                "torch.optim.Muon takes 2-D matrices only",
                len(shaped),
            )
        options: dict[str, Any] = {"lr": self.lr, "weight_decay": self.weight_decay}
        for key, name in (("momentum", "momentum"), ("nesterov", "nesterov")):
            if getattr(self, key) is not None:
                options[name] = getattr(self, key)
        if self.adjust_lr is not None:
            options["adjust_lr_fn"] = self.adjust_lr
        if self.ns_steps is not None:
            options["ns_steps"] = self.ns_steps
        optimizers: list[torch.optim.Optimizer] = [torch.optim.Muon(roles["matrix"], **options)]
        groups = self._role_groups(roles, float(self.adam_lr or 0.0), with_matrices=False)
        if groups:
            adam: dict[str, Any] = {"lr": self.adam_lr}
            for key in ("betas", "eps", "foreach"):
                if getattr(self, key) is not None:
                    adam[key] = getattr(self, key)
            optimizers.append(AdamW(groups, **adam))
        return optimizers

    def _role_groups(
        self, roles: dict[str, list[nn.Parameter]], lr: float, with_matrices: bool
    ) -> list[dict[str, Any]]:
        """Param groups with their own rates: embeddings, head, (matrices,) the rest."""
        decay, rest = self.weight_decay, roles["other"]
        flat = [p for p in rest if p.ndim < 2]
        shaped = [p for p in rest if p.ndim >= 2]
        candidates = [
            (roles["embedding"], self.embed_lr or lr, decay),
            (roles["head"], self.head_lr or lr, decay),
            ((roles["matrix"] if with_matrices else []) + shaped, lr, decay),
            (flat, lr, decay if self.decay_norm_and_bias else 0.0),
        ]
        return [
            {"params": params, "lr": rate, "weight_decay": wd}
            for params, rate, wd in candidates
            if params
        ]
