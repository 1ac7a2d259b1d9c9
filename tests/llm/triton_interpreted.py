"""Run Tessera's Triton kernels on CPU tensors through Triton's interpreter and print, as JSON,
how far each result is from PyTorch's own ops. Started by test_triton_kernels.py with
TRITON_INTERPRET=1 set, which Triton reads when the kernels are defined."""

import json

import torch
import torch.nn.functional as F

from tessera.models.gpt import GPT, GPTConfig, layers
from tessera.models.gpt.rope_kernel import rope_heads
from tessera.models.gpt.swiglu_kernel import swiglu


def largest(pairs) -> float:
    return max((a - b).abs().max().item() for a, b in pairs)


def swiglu_error(shape) -> float:
    x = torch.randn(*shape, requires_grad=True)
    ref = x.detach().clone().requires_grad_()
    out = swiglu(x)
    gate, up = ref.chunk(2, dim=-1)
    expected = F.silu(gate) * up
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    return largest([(out, expected), (x.grad, ref.grad)])


def rope_error(batch, seq, n_head, n_kv_head, head_dim, table_batch) -> float:
    cos, sin = layers.rope_tables(head_dim, 64, 10000.0)
    positions = torch.arange(seq) + 3 * torch.arange(table_batch)[:, None]
    cos, sin = cos[positions].unsqueeze(1), sin[positions].unsqueeze(1)
    sizes = [n_head * head_dim, n_kv_head * head_dim, n_kv_head * head_dim]
    x = torch.randn(batch, seq, sum(sizes), requires_grad=True)
    ref = x.detach().clone().requires_grad_()
    mine = rope_heads(x, cos, sin, n_head, n_kv_head)
    q, k, v = (t.view(batch, seq, -1, head_dim).transpose(1, 2) for t in ref.split(sizes, dim=-1))
    expected = (layers.apply_rope(q, cos, sin), layers.apply_rope(k, cos, sin), v)
    grads = [torch.randn_like(t) for t in mine]
    torch.autograd.backward(mine, grads)
    torch.autograd.backward(expected, grads)
    contiguous = all(t.is_contiguous() for t in mine)
    return largest([*zip(mine, expected), (x.grad, ref.grad)]) if contiguous else float("inf")


def model_error(**shape) -> tuple[float, bool, bool]:
    """Loss and gradients of a GPT with and without the kernels, same weights."""
    layers.TRITON_DEVICES = ("cuda", "cpu")
    common = dict(vocab_size=61, max_seq_len=32, n_layer=2, position="rope", norm="rmsnorm")
    plain = GPT(GPTConfig(**common, **shape))
    fused = GPT(GPTConfig(**common, **shape, triton_kernels=True))
    fused.load_state_dict(plain.state_dict())
    batch = {"input_ids": torch.randint(0, 61, (3, 25))}
    losses = []
    for model in (plain, fused):
        loss = model.loss(model(batch), batch)
        loss.backward()
        losses.append(loss)
    pairs = [(losses[0], losses[1])]
    pairs += [(a.grad, b.grad) for a, b in zip(plain.parameters(), fused.parameters())]
    block = fused.blocks[0]
    return largest(pairs), block.attn.fused_rope is not None, block.mlp.fused_swiglu is not None


torch.manual_seed(0)
llama = dict(n_head=4, n_kv_head=2, d_model=64, d_ff=88, mlp="swiglu", bias=False)
print(
    json.dumps(
        {
            "swiglu small": swiglu_error((3, 5, 2 * 70)),
            "swiglu two column blocks": swiglu_error((6, 2 * 1100)),
            "rope gqa shared positions": rope_error(2, 37, 4, 2, 16, 1),
            "rope per-sequence positions": rope_error(3, 40, 2, 2, 8, 3),
            "gpt llama-style": model_error(**llama),
            "gpt value embeddings": model_error(**llama, value_embeddings=1),
            "gpt head size 24": model_error(**{**llama, "d_model": 96}),
            "gpt qk-norm": model_error(**llama, qk_norm=True),
        }
    )
)
