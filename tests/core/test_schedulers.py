import math

import pytest
import torch

from tessera.core.state import State
from tessera.core.time import Time, Timestamp
from tessera.optim import (
    SGDW,
    Constant,
    CosineWarmup,
    InverseSquareRoot,
    Linear,
    LinearWarmup,
    MultiStep,
    Polynomial,
    ScheduledLR,
    Step,
)


def state_at(batch, max_duration="10ep", per_epoch=10):
    state = State(
        model=torch.nn.Linear(1, 1),
        max_duration=Time.parse(max_duration),
        device=torch.device("cpu"),
        batches_per_epoch=per_epoch,
        samples_per_batch=4,
    )
    state.timestamp = Timestamp(
        epoch=batch // per_epoch, batch=batch, batch_in_epoch=batch % per_epoch
    )
    return state


@pytest.mark.parametrize(
    ("schedule", "batch", "expected"),
    [
        (Constant(0.5), 37, 0.5),
        (LinearWarmup("10ba"), 5, 0.5),
        (LinearWarmup("0.1dur"), 20, 1.0),
        (CosineWarmup("10ba"), 5, 0.5),
        (CosineWarmup("0ba"), 50, 0.5),  # halfway through 100 batches
        (CosineWarmup("0ba", alpha_f=0.1), 100, 0.1),
        (Linear("0ba"), 25, 0.75),
        (Step("2ep", gamma=0.5), 45, 0.25),
        (MultiStep(["3ep", "60ba"], gamma=0.1), 70, 0.01),
        (Polynomial(power=2.0), 50, 0.25),
        (InverseSquareRoot("25ba"), 100, 0.5),
    ],
)
def test_schedule_values(schedule, batch, expected):
    assert math.isclose(schedule(state_at(batch)), expected, rel_tol=1e-9, abs_tol=1e-12)


def test_scale_schedule_ratio_scales_absolute_times():
    schedule = Step("2ep", gamma=0.5).scaled(2.0)
    assert schedule.step_size == Time.parse("4ep")
    assert schedule(state_at(39)) == 1.0 and schedule(state_at(40)) == 0.5


def test_scheduled_lr_follows_the_state():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    scheduler = ScheduledLR(optimizer, CosineWarmup("0ba"))
    state = state_at(0)
    scheduler.bind_state(state)
    assert optimizer.param_groups[0]["lr"] == 1.0
    state.timestamp = Timestamp(epoch=5, batch=50, batch_in_epoch=0)
    scheduler.step()
    assert math.isclose(optimizer.param_groups[0]["lr"], 0.5)


def test_sgdw_decay_is_decoupled_from_the_gradient():
    weight = torch.nn.Parameter(torch.tensor([2.0]))
    optimizer = SGDW([weight], lr=0.1, momentum=0.9, weight_decay=0.01)
    weight.grad = torch.tensor([0.0])
    optimizer.step()
    assert torch.allclose(weight.detach(), torch.tensor([2.0 * (1 - 0.1 * 0.01)]))
    # momentum buffers never see the decay: a zero gradient leaves them at zero
    assert torch.equal(optimizer.state[weight]["momentum_buffer"], torch.tensor([0.0]))
