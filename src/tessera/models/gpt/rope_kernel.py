"""Split the fused query/key/value projection into heads and rotate queries and keys (RoPE),
as one hand-written Triton kernel each way.

Without it, the heads are views of the projection's output, and the backward of the view, the
rotation and the split is one compiled kernel that gathers transposed gradients element by
element into the projection's gradient. Here the forward writes q, k and v head-major
([B, heads, T, D], what attention reads), and the backward reads the three head-major
gradients tile by tile and writes the projection's gradient [B, T, width] in one pass, so
every load and store is a contiguous run of half a head.

The cos/sin tables must repeat their first half in the second (as `rope_tables` builds them).
Imported only on CUDA machines with Triton (`tessera.models.gpt.layers.fused_rope`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

# (tokens per tile, warps) of the forward and the backward, measured best on an H200
# (benchmarks/gpu_kernels.py)
FORWARD_TILE = (32, 4)
BACKWARD_TILE = (32, 4)


@triton.jit
def _move_heads(
    token_major,
    head_major,
    cos,
    sin,
    seq,
    heads,
    width,
    first_col,
    table_batch_stride,
    TO_HEADS: tl.constexpr,
    ROTATE: tl.constexpr,
    SIGN: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    """Copy (and rotate) a block of tokens of one head between the [B, T, width] projection
    and a [B, heads, T, D] tensor; SIGN -1 rotates backwards (the gradient)."""
    batch = tl.program_id(0) // heads
    head = tl.program_id(0) % heads
    t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)[:, None]
    d = tl.arange(0, HEAD_DIM // 2)[None, :]
    mask = t < seq
    batch64, t64 = batch.to(tl.int64), t.to(tl.int64)
    tokens = token_major + (batch64 * seq + t64) * width + first_col + head * HEAD_DIM + d
    in_heads = head_major + ((batch64 * heads + head) * seq + t64) * HEAD_DIM + d
    if TO_HEADS:
        src = tokens
        dst = in_heads
    else:
        src = in_heads
        dst = tokens
    x1 = tl.load(src, mask=mask).to(tl.float32)
    x2 = tl.load(src + HEAD_DIM // 2, mask=mask).to(tl.float32)
    if ROTATE:
        table = batch * table_batch_stride + t * HEAD_DIM + d
        c = tl.load(cos + table, mask=mask)
        s = tl.load(sin + table, mask=mask) * SIGN
        rotated = x1 * c - x2 * s
        x2 = x2 * c + x1 * s
        x1 = rotated
    kind = dst.dtype.element_ty
    tl.store(dst, x1.to(kind), mask=mask)
    tl.store(dst + HEAD_DIM // 2, x2.to(kind), mask=mask)


def _launch(token_major, head_major, cos, sin, first_col, to_heads, rotate, sign) -> None:
    batch, heads, seq, head_dim = head_major.shape
    stride = 0 if cos.shape[0] == 1 else seq * head_dim
    block_t, warps = FORWARD_TILE if to_heads else BACKWARD_TILE
    grid = (batch * heads, triton.cdiv(seq, block_t))
    wrap_triton(_move_heads)[grid](
        token_major,
        head_major,
        cos,
        sin,
        seq,
        heads,
        token_major.shape[-1],
        first_col,
        stride,
        TO_HEADS=to_heads,
        ROTATE=rotate,
        SIGN=sign,
        HEAD_DIM=head_dim,
        BLOCK_T=block_t,
        num_warps=warps,
    )


def _parts(n_head: int, n_kv_head: int, head_dim: int) -> tuple[tuple[int, bool], ...]:
    """(first column in the projection, rotated?) of the query, key and value heads."""
    kv_col = n_head * head_dim
    return (0, True), (kv_col, True), (kv_col + n_kv_head * head_dim, False)


def _tables(cos: torch.Tensor, sin: torch.Tensor, seq: int, head_dim: int):
    shape = (cos.shape[0], seq, head_dim)
    return cos.reshape(shape).float().contiguous(), sin.reshape(shape).float().contiguous()


@triton_op("tessera::rope_heads", mutates_args={})
def rope_heads(
    qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_head: int, n_kv_head: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k (rotated) and v, each [B, heads, T, D] contiguous, from a [B, T, width] projection
    laid out as n_head query heads, then n_kv_head key heads, then n_kv_head value heads.
    cos/sin: [B or 1, 1, T, D]."""
    qkv = qkv.contiguous()
    batch, seq, width = qkv.shape
    head_dim = width // (n_head + 2 * n_kv_head)
    cos, sin = _tables(cos, sin, seq, head_dim)
    q = qkv.new_empty((batch, n_head, seq, head_dim))
    k = qkv.new_empty((batch, n_kv_head, seq, head_dim))
    v = qkv.new_empty((batch, n_kv_head, seq, head_dim))
    for heads, (first_col, rotate) in zip((q, k, v), _parts(n_head, n_kv_head, head_dim)):
        _launch(qkv, heads, cos, sin, first_col, True, rotate, 1.0)
    return q, k, v


@triton_op("tessera::rope_heads_backward", mutates_args={})
def rope_heads_backward(
    grad_q: torch.Tensor,
    grad_k: torch.Tensor,
    grad_v: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
) -> torch.Tensor:
    """The gradient of `rope_heads` with respect to the projection, written in one pass."""
    grad_q, grad_k, grad_v = grad_q.contiguous(), grad_k.contiguous(), grad_v.contiguous()
    batch, n_head, seq, head_dim = grad_q.shape
    n_kv_head = grad_k.shape[1]
    cos, sin = _tables(cos, sin, seq, head_dim)
    grad = grad_q.new_empty((batch, seq, (n_head + 2 * n_kv_head) * head_dim))
    parts = _parts(n_head, n_kv_head, head_dim)
    for heads, (first_col, rotate) in zip((grad_q, grad_k, grad_v), parts):
        _launch(grad, heads, cos, sin, first_col, False, rotate, -1.0)  # rotated back
    return grad


def _save_tables(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[1], inputs[2])
    ctx.shapes, ctx.dtype = [tensor.shape for tensor in output], output[0].dtype


def _backward(ctx, grad_q, grad_k, grad_v):
    cos, sin = ctx.saved_tensors
    grads = [
        torch.zeros(shape, dtype=ctx.dtype, device=cos.device) if grad is None else grad
        for grad, shape in zip((grad_q, grad_k, grad_v), ctx.shapes)
    ]
    return rope_heads_backward(*grads, cos, sin), None, None, None, None


rope_heads.register_autograd(_backward, setup_context=_save_tables)
