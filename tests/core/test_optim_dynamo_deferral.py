"""Optimizers step without importing torch._dynamo while nothing is compiled, and step exactly
as torch's own, before and after dynamo is imported (a fresh interpreter, since other tests in
this process import dynamo)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

SCRIPT = """
import json, sys, torch
from tessera.optim.optimizers import AdamW, SGDW, OptimizerConfig

def train(make, steps):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    optimizer = make(model.parameters())
    for step in range(steps):
        x = torch.randn(32, 8, generator=torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()
    optimizer.load_state_dict(optimizer.state_dict())
    assert all(p.is_leaf and p.grad_fn is None for p in model.parameters())
    return [p.detach().clone() for p in model.parameters()]

def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))

adamw = lambda cls: (lambda params: cls(params, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95)))
sgd = lambda cls: (lambda params: cls(params, lr=0.1, momentum=0.9))
OptimizerConfig(name="adamw", lr=1e-3).build(torch.nn.Linear(4, 4))
ours = {"adamw": train(adamw(AdamW), 5), "sgdw": train(sgd(SGDW), 5)}
result = {"dynamo_before": "torch._dynamo" in sys.modules}
result["adamw_same"] = same(ours["adamw"], train(adamw(torch.optim.AdamW), 5))
result["sgdw_same"] = same(ours["sgdw"], train(sgd(torch.optim.SGD), 5))
result["dynamo_loaded_by_torch_step"] = "torch._dynamo" in sys.modules
result["adamw_same_after"] = same(train(adamw(AdamW), 3), train(adamw(torch.optim.AdamW), 3))
result["sgdw_same_after"] = same(train(sgd(SGDW), 3), train(sgd(torch.optim.SGD), 3))
print(json.dumps(result))
"""


def test_steps_match_torch_and_import_no_dynamo_until_something_else_does() -> None:
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {
        "dynamo_before": False,
        "adamw_same": True,
        "sgdw_same": True,
        "dynamo_loaded_by_torch_step": True,  # so the two sides after this compare with dynamo
        "adamw_same_after": True,
        "sgdw_same_after": True,
    }
