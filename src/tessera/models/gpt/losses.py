"""The output layer and cross-entropy, a chunk of tokens at a time.

A 32k-token sequence with a 128k vocabulary has 4·10⁹ logits: 16 GB in float32, twice that
with their gradient. `linear_cross_entropy` never holds more than one chunk of them: in the
forward pass it computes each chunk's logits, its loss and, right away, the chunk's gradients
with respect to the hidden states and the output weight; backward then only scales those by
the incoming gradient. It costs the same matrix products as the plain head + loss (no
recomputation) and gives the same loss and gradients up to rounding.

`token_logprobs` (per-token log-probabilities, for DPO and evaluation) recomputes each
chunk's logits in backward instead (activation checkpointing of the head), since its
gradient depends on how the caller combines the values.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

IGNORE = -100


def _compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return hidden.dtype


def _loss_and_gradient(
    logits: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy of one chunk and its gradient with respect to the logits."""
    logits32 = logits.float()
    valid = targets != IGNORE
    safe = targets.clamp(min=0).unsqueeze(1)
    log_norm = torch.logsumexp(logits32, dim=-1, keepdim=True)
    target_logit = logits32.gather(1, safe)
    loss = ((log_norm - target_logit).squeeze(1) * valid).sum()
    gradient = torch.exp(logits32 - log_norm)
    gradient.scatter_add_(1, safe, torch.full_like(target_logit, -1.0))
    gradient = gradient * valid.unsqueeze(1)
    return loss, gradient.to(logits.dtype)


_fused: dict[str, Any] = {}


def _chunk_kernel(device: torch.device) -> Any:
    """The per-chunk math, compiled into one fused kernel on CUDA (plain PyTorch elsewhere)."""
    if device.type != "cuda":
        return _loss_and_gradient
    if "cuda" not in _fused:
        _fused["cuda"] = torch.compile(_loss_and_gradient, dynamic=False)
    return _fused["cuda"]


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        chunk: int,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        want_hidden, want_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        kernel = _chunk_kernel(hidden.device)
        count = (targets != IGNORE).sum().clamp(min=1)
        total = torch.zeros((), device=hidden.device, dtype=torch.float32)
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if want_weight else None
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            for start in range(0, hidden.shape[0], chunk):
                h = hidden[start : start + chunk].to(dtype)
                loss, grad_logits = kernel(h @ w.t(), targets[start : start + chunk])
                total += loss
                if grad_hidden is not None:
                    grad_hidden[start : start + chunk] = grad_logits @ w
                if grad_weight is not None:
                    grad_weight += grad_logits.t() @ h
        ctx.weight_dtype = weight.dtype
        ctx.save_for_backward(grad_hidden, grad_weight, count)
        return total / count

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        grad_hidden, grad_weight, count = ctx.saved_tensors
        scale = grad_output / count
        hidden = grad_hidden * scale.to(grad_hidden.dtype) if grad_hidden is not None else None
        weight = (grad_weight * scale).to(ctx.weight_dtype) if grad_weight is not None else None
        return hidden, weight, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int
) -> torch.Tensor:
    """Mean cross-entropy of `hidden @ weight.T` against `targets` (-100: not scored), as
    F.cross_entropy(..., ignore_index=-100) would give, holding one chunk of logits at a time.

    hidden [..., d], weight [vocab, d], targets [...] of the same leading shape."""
    flat, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    return _LinearCrossEntropy.apply(flat, weight, flat_targets, chunk, _compute_dtype(hidden))


def _chunk_logprobs(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    logits = F.linear(hidden, weight)
    nll = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE, reduction="none")
    return -nll


def token_logprobs(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int | None = None
) -> torch.Tensor:
    """log p(target) per token ([...], 0 where the target is -100), `chunk` tokens of logits
    at a time (recomputed in backward) or all at once when `chunk` is None."""
    shape = targets.shape
    flat, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    if chunk is None or flat.shape[0] <= chunk:
        return _chunk_logprobs(flat, weight, flat_targets).view(shape)
    from torch.utils.checkpoint import checkpoint

    pieces = []
    for start in range(0, flat.shape[0], chunk):
        h, t = flat[start : start + chunk], flat_targets[start : start + chunk]
        if torch.is_grad_enabled():
            pieces.append(checkpoint(_chunk_logprobs, h, weight, t, use_reentrant=False))
        else:
            pieces.append(_chunk_logprobs(h, weight, t))
    return torch.cat(pieces).view(shape)
