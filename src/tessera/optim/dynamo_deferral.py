"""Training without importing `torch._dynamo` where nothing is compiled (about 3 s of start-up
on 2 CPU cores, the largest part after `import torch`).

torch imports dynamo on the first call of several optimizer methods only to mark them as not
to be traced: `add_param_group`, `zero_grad`, `state_dict` and `load_state_dict` are wrapped in
`torch._disable_dynamo`, and the `step` of SGD, Adam and AdamW in
`_use_grad_for_differentiable`, which imports dynamo on every call to insert graph breaks
(no-ops outside a compiled frame). Until something else imports dynamo (a `compile` section,
FlexAttention, the user), these run undecorated, with the same grad mode; from then on torch's
own wrappers decide, exactly as without this module.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch

METHODS = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")
_MARK = "__dynamo_disable"  # where torch._disable_dynamo caches its decision


def _dynamo_loaded() -> bool:
    return "torch._dynamo" in sys.modules


def _deferred(method: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        if _dynamo_loaded():  # dynamo is in use now: decide as torch does
            import torch._dynamo

            disabled = torch._dynamo.disable(method, True, wrapping=False)
            setattr(method, _MARK, disabled)
            return disabled(*args, **kwargs)
        return method(*args, **kwargs)

    return call


def defer_dynamo_import() -> None:
    """Let torch.optim.Optimizer's `_disable_dynamo` methods run undecorated until dynamo is
    imported (a torch whose wrappers differ is left as it is)."""
    if _dynamo_loaded():
        return
    for name in METHODS:
        method = getattr(getattr(torch.optim.Optimizer, name, None), "__wrapped__", None)
        if method is not None and not hasattr(method, _MARK):
            setattr(method, _MARK, _deferred(method))


def eager_step(
    optimizer: torch.optim.Optimizer, torch_class: type, closure: Callable[[], Any] | None = None
) -> Any:
    """`torch_class.step` on `optimizer`, without its dynamo import while dynamo is unused."""
    step = torch_class.step
    undecorated = getattr(step, "__wrapped__", None)
    if undecorated is None or _dynamo_loaded():
        return step(optimizer, closure)
    with torch.set_grad_enabled(optimizer.defaults.get("differentiable", False)):
        return undecorated(optimizer, closure)
