"""SwiGLU, silu(gate) * up, with a hand-written Triton kernel for its backward.

The MLP's gate and up projections are one matrix, so its output is [tokens, 2 x hidden] with
the gate in the first half of each row. torch.compile fuses the activation's backward itself,
but the gradients of the two halves leave its kernel through a cat, which it addresses element
by element: on an H200 that kernel moves its bytes at about half the rate this one does. This
kernel walks tiles of whole row segments, so every load and store is contiguous, and it reads
the saved projection once to write both halves of the gradient. The forward stays PyTorch ops
(`triton_op` lets torch.compile fuse them): the compiler's forward kernel already runs at
full bandwidth, and a hand-written one measured the same (benchmarks/results/llm.md).

Imported only on CUDA machines with Triton (`tessera.models.gpt.layers.fused_swiglu`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

BLOCK_COLS = 1024
BLOCK_ROWS = 4
NUM_WARPS = 4


@triton.jit
def _swiglu_backward(
    grad_out, gate_up, grad_in, rows, hidden, BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr
):
    row = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)[:, None]
    col = tl.program_id(1) * BLOCK_COLS + tl.arange(0, BLOCK_COLS)[None, :]
    mask = (row < rows) & (col < hidden)
    row = row.to(tl.int64)
    gate = tl.load(gate_up + row * 2 * hidden + col, mask=mask).to(tl.float32)
    up = tl.load(gate_up + row * 2 * hidden + hidden + col, mask=mask).to(tl.float32)
    grad = tl.load(grad_out + row * hidden + col, mask=mask).to(tl.float32)
    sigmoid = tl.sigmoid(gate)
    silu = gate * sigmoid
    # d silu(g) / dg = s (1 + g (1 - s))
    grad_gate = grad * up * sigmoid * (1.0 + gate * (1.0 - sigmoid))
    grad_up = grad * silu
    kind = grad_in.dtype.element_ty
    tl.store(grad_in + row * 2 * hidden + col, grad_gate.to(kind), mask=mask)
    tl.store(grad_in + row * 2 * hidden + hidden + col, grad_up.to(kind), mask=mask)


def _grid(rows: int, hidden: int) -> tuple[int, int]:
    return triton.cdiv(rows, BLOCK_ROWS), triton.cdiv(hidden, BLOCK_COLS)


@triton_op("tessera::swiglu", mutates_args={})
def swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up of a [..., 2 x hidden] tensor whose last dimension is gate then up."""
    gate, up = gate_up.chunk(2, dim=-1)
    return torch.nn.functional.silu(gate) * up


@triton_op("tessera::swiglu_backward", mutates_args={})
def swiglu_backward(grad_out: torch.Tensor, gate_up: torch.Tensor) -> torch.Tensor:
    """The gradient of `swiglu` with respect to its input, both halves in one pass."""
    grad_out, gate_up = grad_out.contiguous(), gate_up.contiguous()
    hidden = gate_up.shape[-1] // 2
    rows = gate_up.numel() // (2 * hidden)
    grad_in = torch.empty_like(gate_up)
    wrap_triton(_swiglu_backward)[_grid(rows, hidden)](
        grad_out,
        gate_up,
        grad_in,
        rows,
        hidden,
        BLOCK_ROWS=BLOCK_ROWS,
        BLOCK_COLS=BLOCK_COLS,
        num_warps=NUM_WARPS,
    )
    return grad_in


def _save_input(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[0])


def _backward(ctx, grad_out: torch.Tensor) -> torch.Tensor:
    return swiglu_backward(grad_out, ctx.saved_tensors[0])


swiglu.register_autograd(_backward, setup_context=_save_input)
