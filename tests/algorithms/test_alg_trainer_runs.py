"""Methods in real Trainer runs together: a composition of several methods, loss-curve
equality for the math-preserving ones, and method state through a checkpoint and resume.
(Each method's own effect in a run is tested beside its plain function, in the other files.)"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from alg_support import Probe, inputs_of, tiny_resnet, weights_of

import tessera.algorithms as algorithms
from tessera.algorithms.blurpool import BlurConv2d


def test_several_methods_compose_in_one_run_and_each_does_its_part(make_trainer):
    model = tiny_resnet()
    methods = algorithms.build_algorithms(
        {
            "label_smoothing": {"smoothing": 0.2},
            "ema": {"smoothing": 0.5},
            "cutout": {"length": 0.25},
            "blurpool": {"min_channels": 8},
            "progressive_resizing": {"initial_scale": 0.5, "delay": 0.0, "finetune": 0.2},
            "gradient_clipping": {"threshold": 0.05},
        }
    )
    probe = Probe(
        before_forward=inputs_of,
        after_loss=lambda s: (s.loss.detach(), s.outputs.detach(), s.batch[1].clone()),
        before_optimizer_step=lambda s: torch.norm(
            torch.stack([p.grad.norm() for p in s.model.parameters() if p.grad is not None])
        ),
        after_optimizer_step=lambda s: weights_of(s.model),
    )
    make_trainer(methods, model=model, batches=4, callbacks=[probe]).fit()
    assert sum(isinstance(m, BlurConv2d) for m in model.modules()) == 4
    inputs = probe.seen["before_forward"]
    assert [x.shape[-1] for x in inputs] == [16, 20, 24, 28]  # resized first ...
    assert all(((x == 0).flatten(1).sum(1) > 0).all() for x in inputs)  # ... then holes cut
    for loss, outputs, targets in probe.seen["after_loss"]:
        expected = F.cross_entropy(outputs, targets, label_smoothing=0.2)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert all(
        norm.item() == pytest.approx(0.05, rel=1e-3) for norm in probe.seen["before_optimizer_step"]
    )
    trained = probe.seen["after_optimizer_step"][-1]
    final = weights_of(model)
    assert not torch.allclose(final["module.fc.weight"], trained["module.fc.weight"])  # EMA


def _loss_curve(make_trainer, methods, callbacks=()):
    losses = Probe(batch_end=lambda s: float(s.batch_loss))
    model = tiny_resnet(seed=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.003, foreach=False)
    trainer = make_trainer(
        methods,
        model=model,
        batches=3,
        max_duration="2ep",
        callbacks=[losses, *callbacks],
        optimizer=optimizer,
        seed=7,
    )
    trainer.fit()
    return losses.seen["batch_end"], trainer


@pytest.fixture(scope="module")
def plain_curve():
    """The plain run's losses, computed once by the first comparison that needs them."""
    return {}


@pytest.mark.parametrize(
    "spec",
    [
        {"channels_last": {}},
        {"fused_optimizer": {"kind": "foreach"}},
        {"fused_optimizer": {"kind": "fused"}},
    ],
    ids=["channels_last", "foreach", "fused"],
)
def test_math_preserving_methods_match_the_plain_loss_curve(spec, make_trainer, plain_curve):
    if "losses" not in plain_curve:
        plain_curve["losses"] = _loss_curve(make_trainer, [])[0]
    plain = plain_curve["losses"]
    layouts = Probe(
        before_forward=lambda s: s.batch[0].is_contiguous(memory_format=torch.channels_last)
    )
    changed, trainer = _loss_curve(make_trainer, algorithms.build_algorithms(spec), [layouts])
    name = next(iter(spec))
    model = trainer.state.unwrapped_model
    if name == "channels_last":
        assert model.module.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
        assert layouts.seen["before_forward"] == [True] * 6
    elif name == "fused_optimizer":
        kind = spec[name]["kind"]
        assert all(group[kind] for group in trainer.state.optimizers[0].param_groups)
    assert len(plain) == len(changed) == 6
    assert changed == pytest.approx(plain, rel=1e-3, abs=1e-4)
    assert plain[0] != plain[-1]


RESUME_OPTIONS = {
    "ema": {"smoothing": 0.5},
    "swa": {"start": 0.0, "update_interval": 1, "bn_batches": 2},
    "magnitude_pruning": {"target_sparsity": 0.6, "start": 0.0, "end": 0.5, "update_interval": 1},
    "layer_freezing": {"freeze_start": 0.0, "freeze_level": 0.5},
    "sam": {"interval": 2},
}
# What each method's state holds after the 4 batches of the first run.
AFTER_FOUR_BATCHES = {
    "ema": lambda state: state["updates"] == 4,
    "swa": lambda state: state["count"] == 4,
    "magnitude_pruning": lambda state: state["sparsity"] == 0.6 and len(state["masks"]) == 8,
    "layer_freezing": lambda state: state["frozen"] == 9,  # int(0.5 * 19) layers
    "sam": lambda state: state["steps"] == 4,
}


def _copy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def _assert_equal(restored, saved) -> None:
    if isinstance(saved, dict):
        assert restored.keys() == saved.keys()
        for key in saved:
            _assert_equal(restored[key], saved[key])
    elif isinstance(saved, torch.Tensor):
        assert torch.equal(restored.to(saved.device), saved)
    else:
        assert restored == saved


@pytest.mark.parametrize("name", list(RESUME_OPTIONS))
def test_method_state_survives_a_checkpoint_and_resume(name, make_trainer, tmp_path):
    def method():
        return algorithms.get(name, **RESUME_OPTIONS[name])

    def algorithm_state(state):
        return _copy(state.algorithms[0].state_dict())

    saved = Probe(epoch_checkpoint=algorithm_state)
    first = make_trainer(
        [method()], batches=2, max_duration="2ep", run_dir=tmp_path, callbacks=[saved]
    )
    first.fit()
    at_save = saved.seen["epoch_checkpoint"][-1]
    assert AFTER_FOUR_BATCHES[name](at_save), at_save
    resumed = Probe(fit_start=algorithm_state, batch_start=lambda s: s.timestamp.batch)
    make_trainer(
        [method()], batches=2, max_duration="3ep", run_dir=tmp_path, callbacks=[resumed]
    ).fit()
    assert resumed.seen["batch_start"] == [4, 5]  # it continued after the 4 saved batches
    _assert_equal(resumed.seen["fit_start"][0], at_save)
