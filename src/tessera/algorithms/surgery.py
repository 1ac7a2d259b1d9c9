"""Model surgery: replace submodules in place and keep optimizers pointing at live parameters.

Optimizers are built before algorithms run, so a method that swaps a module for one with new
parameters (SqueezeExcite, Factorize) must also swap those parameters inside every optimizer's
param groups; `replace_modules` does both. Methods that wrap a module and keep its parameters
(BlurPool, GhostBatchNorm) need no optimizer change, and `replace_modules` leaves it alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

# Given (qualified name, module), return a replacement module or None to keep it.
Policy = Callable[[str, nn.Module], "nn.Module | None"]


def replace_modules(
    model: nn.Module,
    policy: Policy,
    optimizers: Sequence[torch.optim.Optimizer] | torch.optim.Optimizer | None = None,
) -> list[tuple[str, nn.Module, nn.Module]]:
    """Replace every submodule for which `policy` returns a module; returns what was replaced.

    Replacements are not searched again, so a wrapper that holds the original is safe. When
    `optimizers` is given, parameters that disappeared are swapped for the new ones in place.
    """
    replaced: list[tuple[str, nn.Module, nn.Module]] = []
    _walk(model, "", policy, replaced)
    if optimizers is not None and replaced:
        if isinstance(optimizers, torch.optim.Optimizer):
            optimizers = [optimizers]
        for _, old, new in replaced:
            swap_parameters(optimizers, list(old.parameters()), list(new.parameters()))
    return replaced


def _walk(
    module: nn.Module, prefix: str, policy: Policy, replaced: list[tuple[str, nn.Module, nn.Module]]
) -> None:
    for child_name, child in list(module.named_children()):
        name = f"{prefix}.{child_name}" if prefix else child_name
        new = policy(name, child)
        if new is not None and new is not child:
            setattr(module, child_name, new)
            replaced.append((name, child, new))
        else:
            _walk(child, name, policy, replaced)


def swap_parameters(
    optimizers: Sequence[torch.optim.Optimizer],
    old: Sequence[nn.Parameter],
    new: Sequence[nn.Parameter],
) -> None:
    """In each optimizer, drop removed `old` parameters and add the `new` ones.

    The new parameters join the param group that held the first of the old ones (so they get
    its learning rate and weight decay); parameters in both lists stay untouched and state of
    removed ones is dropped. If none of the old parameters was optimized, nothing is added.
    """
    old_ids = {id(p) for p in old}
    new_ids = {id(p) for p in new}
    removed = old_ids - new_ids
    added = [p for p in new if id(p) not in old_ids and p.requires_grad]
    if not removed and not added:
        return
    for optimizer in optimizers:
        target_group = None
        for group in optimizer.param_groups:
            kept = []
            for p in group["params"]:
                if id(p) in old_ids and target_group is None:
                    target_group = group
                if id(p) in removed:
                    optimizer.state.pop(p, None)
                else:
                    kept.append(p)
            group["params"] = kept
        if target_group is not None:
            target_group["params"].extend(added)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def add_parameters(
    optimizers: Sequence[torch.optim.Optimizer],
    beside: nn.Parameter,
    new: Sequence[nn.Parameter],
) -> bool:
    """Add `new` parameters to the param group that holds `beside` (so they train with its
    learning rate and weight decay); returns False when no optimizer holds `beside`."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            if any(p is beside for p in group["params"]):
                group["params"].extend(p for p in new if p.requires_grad)
                return True
    return False
