import pytest
import torch

from tessera.core.callback import Callback
from tessera.core.errors import ConfigError
from tessera.core.event import Event
from tessera.trainer import Trainer


class EventLog(Callback):
    def __init__(self):
        self.events = []

    def __getattr__(self, name):
        if name in {event.value for event in Event}:
            return lambda state, logger: self.events.append(name)
        raise AttributeError(name)


def make_trainer(loaders, classifier=None, **kwargs):
    train, evaluation = loaders()
    model = kwargs.pop("model", None) or classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return Trainer(
        model,
        train,
        kwargs.pop("max_duration", "2ep"),
        optimizers=optimizer,
        eval_data=evaluation,
        device="cpu",
        run_dir=kwargs.pop("run_dir", None),
        loggers=kwargs.pop("loggers", []),
        **kwargs,
    )


def test_fit_runs_events_in_order_and_evaluates_each_epoch(small_loaders, classifier):
    log = EventLog()
    trainer = make_trainer(small_loaders, classifier, callbacks=[log])
    trainer.fit()
    ts = trainer.state.timestamp
    assert (ts.epoch, ts.batch, ts.sample) == (2, 16, 512)
    first_batch = log.events[log.events.index("batch_start") : log.events.index("batch_end") + 1]
    assert first_batch == [
        "batch_start",
        "after_dataloader",
        "before_forward",
        "after_forward",
        "before_loss",
        "after_loss",
        "before_backward",
        "after_backward",
        "before_optimizer_step",
        "after_optimizer_step",
        "batch_end",
    ]
    assert log.events.count("eval_start") == 2 and log.events.count("epoch_end") == 2
    assert log.events[0] == "init" and log.events[-1] == "fit_end"
    _, evaluation = small_loaders()
    correct = total = 0
    with torch.no_grad():
        for images, labels in evaluation:
            correct += int((trainer.state.model.module(images).argmax(1) == labels).sum())
            total += len(labels)
    assert trainer.state.eval_results["eval"]["accuracy"] == pytest.approx(correct / total)


def test_training_learns_on_real_images(small_loaders, classifier):
    trainer = make_trainer(small_loaders, classifier, max_duration="6ep")
    before = trainer.evaluate()["eval"]["accuracy"]
    trainer.fit()
    assert trainer.state.eval_results["eval"]["accuracy"] > max(before + 0.3, 0.6)


def test_batch_duration_stops_mid_epoch_and_eval_interval_in_batches(small_loaders, classifier):
    log = EventLog()
    trainer = make_trainer(
        small_loaders, classifier, max_duration="11ba", eval_interval="5ba", callbacks=[log]
    )
    trainer.fit()
    assert trainer.state.timestamp.batch == 11 and trainer.state.timestamp.epoch == 1
    assert log.events.count("eval_start") == 3  # at 5, 10, and the end (11)


def test_microbatches_give_the_same_update_as_whole_batches(small_loaders, classifier):
    weights = []
    for microbatch in (None, 8):
        trainer = make_trainer(
            small_loaders,
            classifier,
            max_duration="3ba",
            device_train_microbatch_size=microbatch,
            seed=1,
        )
        trainer.fit()
        weights.append(torch.cat([p.flatten() for p in trainer.state.model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-5, atol=1e-6)


class OutOfMemoryAbove(torch.nn.Module):
    """A real network that raises the real OOM error for microbatches above a size."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
        self.attempts = []

    def forward(self, x):
        self.attempts.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated by the test)")
        return self.net(x)


def test_auto_microbatch_halves_on_oom_and_matches_fixed_size(small_loaders, classifier):
    from tessera.models import ModuleWithLoss

    results = []
    for setting in ("auto", 8):
        torch.manual_seed(0)
        network = OutOfMemoryAbove(limit=8)
        trainer = make_trainer(
            small_loaders,
            None,
            model=ModuleWithLoss(network),
            max_duration="3ba",
            device_train_microbatch_size=setting,
        )
        trainer.fit()
        results.append(torch.cat([p.flatten() for p in network.parameters()]))
        if setting == "auto":
            assert trainer.state.microbatch_size == 8
            assert network.attempts[:3] == [32, 16, 8]
    assert torch.equal(results[0], results[1])


@pytest.mark.parametrize("precision", ["amp_bf16", "amp_fp16"])
def test_mixed_precision_trains(small_loaders, classifier, precision):
    trainer = make_trainer(small_loaders, classifier, max_duration="4ba", precision=precision)
    trainer.fit()
    assert trainer.state.scaler.is_enabled() == (precision == "amp_fp16")
    assert torch.isfinite(trainer.state.batch_loss)


def test_bad_microbatch_size_and_precision_are_config_errors(small_loaders, classifier):
    with pytest.raises(ConfigError, match="device_train_microbatch_size"):
        make_trainer(small_loaders, classifier, device_train_microbatch_size=-3)
    with pytest.raises(ConfigError, match="precision"):
        make_trainer(small_loaders, classifier, precision="fp8")


def test_token_interval_without_tokens_is_refused(small_loaders, classifier):
    trainer = make_trainer(small_loaders, classifier, max_duration="3ba", eval_interval="3tok")
    with pytest.raises(ConfigError, match="eval_interval: 3tok counts tokens"):
        trainer.fit()


def test_closure_optimizers_get_a_closure_that_recomputes_the_loss(small_loaders, classifier):
    calls = []

    class ClosureSGD(torch.optim.SGD):
        needs_closure = True

        def step(self, closure=None):
            calls.append(float(closure()))
            return super().step()

    model = classifier()
    train, _ = small_loaders()
    optimizer = ClosureSGD(model.parameters(), lr=0.1)
    trainer = Trainer(model, train, "2ba", optimizers=optimizer, device="cpu", run_dir=None)
    trainer.fit()
    assert len(calls) == 2 and all(loss > 0 for loss in calls)
