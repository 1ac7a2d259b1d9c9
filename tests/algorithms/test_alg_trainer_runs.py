"""Every method in a short real Trainer run, plus loss-curve equality for math-preserving ones."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_mlp, tiny_resnet
from tessera.algorithms.compile import is_compiled

import tessera.algorithms as algorithms
from tessera.algorithms.blurpool import BlurConv2d
from tessera.algorithms.magnitude_pruning import measured_sparsity
from tessera.algorithms.sam import SAMOptimizer
from tessera.core.callback import Callback

# Hyper-parameters that make each method act within a 4-batch run of a width-8 ResNet.
RUN_KWARGS = {
    "blurpool": {"min_channels": 8},
    "squeeze_excite": {"min_channels": 8, "latent_channels": 4},
    "factorize": {"min_features": 8, "latent_features": 0.25},
    "progressive_resizing": {"delay": 0.0, "finetune": 0.2},
    "selective_backprop": {"start": 0.0, "end": 1.0, "interrupt": 0, "keep": 0.5},
    "layer_freezing": {"freeze_start": 0.0},
    "swa": {"start": 0.0, "update_interval": 1, "bn_batches": 2},
    "ema": {"smoothing": 0.5},
    "magnitude_pruning": {"target_sparsity": 0.6, "start": 0.0, "end": 0.5, "update_interval": 1},
    "semi_structured_sparsity": {"start": 0.0},
    "compile": {"backend": "aot_eager"},
}
NEEDS = {
    "semi_structured_sparsity": {"model": tiny_mlp},
    "low_precision_norm": {"precision": "amp_bf16"},
}


class Recorder(Callback):
    """Records each microbatch's input shape and each batch's loss."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.losses: list[float] = []

    def before_forward(self, state, logger) -> None:
        self.shapes.append(tuple(state.batch[0].shape))

    def batch_end(self, state, logger) -> None:
        self.losses.append(float(state.batch_loss))


def check_effect(name, trainer, recorder):
    """What each method must visibly have done in the run."""
    state = trainer.state
    model = state.unwrapped_model
    if name == "blurpool":
        assert any(isinstance(m, BlurConv2d) for m in model.modules())
    elif name == "progressive_resizing":
        assert recorder.shapes[0][-1] < 28 and recorder.shapes[-1][-1] == 28
    elif name == "colout":
        assert all(shape[-1] < 28 for shape in recorder.shapes)
    elif name == "selective_backprop":
        assert all(shape[0] == 8 for shape in recorder.shapes)
    elif name == "layer_freezing":
        assert any(not p.requires_grad for p in model.parameters())
    elif name == "magnitude_pruning":
        assert measured_sparsity(model) == pytest.approx(0.6, abs=0.01)
    elif name == "semi_structured_sparsity":
        weight = model.module[3].weight
        assert ((weight != 0).view(-1, 4).sum(1) <= 2).all()
    elif name == "sam":
        assert isinstance(state.optimizers[0], SAMOptimizer) and state.optimizers[0].steps == 4
    elif name == "swa":
        assert state.algorithms[0].count == 4
    elif name == "compile":
        assert is_compiled(state.model)
    elif name == "channels_last":
        assert model.module.stem[0].weight.is_contiguous(memory_format=torch.channels_last)


# Language-model methods run together on a GPT in test_alg_language_model.py.
LANGUAGE_MODEL = {
    "alibi",
    "gated_linear_units",
    "low_precision_layernorm",
    "sequence_length_warmup",
}
# Math-preserving methods run in the trainer in the loss-curve comparison below.
MATH_PRESERVING = {"channels_last", "fused_optimizer", "compile"}
VISION_AND_GENERAL = [
    name for name in algorithms.names() if name not in LANGUAGE_MODEL | MATH_PRESERVING
]


@pytest.mark.parametrize("name", VISION_AND_GENERAL)
def test_each_method_trains_in_a_real_trainer_run(name, make_trainer):
    kwargs = dict(NEEDS.get(name, {}))
    model = kwargs.pop("model", tiny_resnet)()
    recorder = Recorder()
    trainer = make_trainer(
        [algorithms.get(name, **RUN_KWARGS.get(name, {}))],
        model=model,
        batches=2,
        max_duration="2ep",
        callbacks=[recorder],
        **kwargs,
    )
    trainer.fit()
    assert trainer.state.timestamp.batch == 4
    assert all(math.isfinite(loss) for loss in recorder.losses)
    accuracy = trainer.state.eval_results["eval"]["accuracy"]
    assert 0.0 <= accuracy <= 1.0
    check_effect(name, trainer, recorder)


def _loss_curve(make_trainer, methods):
    recorder = Recorder()
    model = tiny_resnet(seed=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.003, foreach=False)
    trainer = make_trainer(
        methods,
        model=model,
        batches=3,
        max_duration="2ep",
        callbacks=[recorder],
        optimizer=optimizer,
        seed=7,
    )
    trainer.fit()
    return recorder.losses, trainer


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
        {"compile": {"backend": "aot_eager"}},
    ],
    ids=["channels_last", "foreach", "fused", "compile"],
)
def test_math_preserving_methods_match_the_plain_loss_curve(spec, make_trainer, plain_curve):
    if "losses" not in plain_curve:
        plain_curve["losses"] = _loss_curve(make_trainer, [])[0]
    plain = plain_curve["losses"]
    changed, trainer = _loss_curve(make_trainer, algorithms.build_algorithms(spec))
    name = next(iter(spec))
    check_effect(name, trainer, None)
    if name == "fused_optimizer":
        kind = spec[name]["kind"]
        assert all(group[kind] for group in trainer.state.optimizers[0].param_groups)
    assert len(plain) == len(changed) == 6
    assert changed == pytest.approx(plain, rel=1e-3, abs=1e-4)
    assert plain[0] != plain[-1]


class LossProbe(Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def after_loss(self, state, logger) -> None:
        self.seen.append((state.loss.detach(), state.outputs.detach(), state.batch[1]))


def test_label_smoothing_in_the_trainer_gives_the_smoothed_cross_entropy(make_trainer):
    probe = LossProbe()
    make_trainer(
        [algorithms.get("label_smoothing", smoothing=0.3)],
        batches=2,
        max_duration="2ba",
        callbacks=[probe],
    ).fit()
    assert len(probe.seen) == 2
    for loss, outputs, targets in probe.seen:
        expected = torch.nn.functional.cross_entropy(outputs, targets, label_smoothing=0.3)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_mixing_loss_in_the_trainer_is_the_mixed_cross_entropy(name, make_trainer):
    probe = LossProbe()
    mixing = algorithms.get(name, alpha=1.0)
    make_trainer([mixing], batches=1, max_duration="1ba", callbacks=[probe]).fit()
    loss, outputs, targets = probe.seen[0]
    cross_entropy = torch.nn.functional.cross_entropy
    lam = mixing.mixing
    expected = lam * cross_entropy(outputs, targets) + (1 - lam) * cross_entropy(
        outputs, mixing.permuted_targets
    )
    assert 0.0 < lam < 1.0
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert not torch.equal(mixing.permuted_targets, targets)


@pytest.mark.parametrize("name", ["ema", "swa", "magnitude_pruning", "layer_freezing", "sam"])
def test_method_state_survives_a_checkpoint(name, make_trainer, tmp_path):
    kwargs = RUN_KWARGS.get(name, {})
    trainer = make_trainer([algorithms.get(name, **kwargs)], batches=2, max_duration="2ep")
    trainer.fit()
    saved = trainer.state.algorithms[0].state_dict()
    path = trainer.save_checkpoint(tmp_path)
    resumed = make_trainer(
        [algorithms.get(name, **kwargs)], batches=2, max_duration="2ep", load_path=path
    )
    loaded = resumed.state.algorithms[0]
    if name == "ema":
        loaded._start(resumed.state.unwrapped_model)
    restored = loaded.state_dict()
    assert restored.keys() == saved.keys()
    for key, value in saved.items():
        if isinstance(value, dict):
            assert value.keys() == restored[key].keys()
            for inner in value:
                assert torch.equal(value[inner], restored[key][inner])
        else:
            assert value == restored[key]
