"""`Evaluator`: run a model over evaluation data and compute its metrics.

It stands alone (`tessera eval` uses it: no optimizer, no trainer) and serves inside a run,
where `PeriodicEvaluation` calls it at an interval. Inside a run it fires the EVAL_* events, so
methods that act on evaluation (EMA swaps in its averaged weights at EVAL_START) take part, and
it holds the run's `State`, never the trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch

from tessera.core.callback import Callback
from tessera.core.determinism import preserved_rng
from tessera.core.event import Event
from tessera.core.interval import Interval
from tessera.core.microbatch import move_to_device, split_batch
from tessera.core.model import TrainableModel, unwrap
from tessera.core.precision import Precision, autocast
from tessera.core.time import Time

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

Results = dict[str, dict[str, float]]


class _Scratch:
    """Where a stand-alone evaluation keeps the batch and outputs (a run uses its State)."""

    batch: Any = None
    outputs: Any = None


class Evaluator:
    """Evaluates on `data` ({label: iterable}); metrics come from the model (`metrics()`)."""

    def __init__(
        self,
        data: dict[str, Iterable[Any]] | Iterable[Any],
        *,
        device: torch.device | str = "cpu",
        precision: Precision | str = Precision.FP32,
        microbatch_size: int | None = None,
    ) -> None:
        self.data = dict(data) if isinstance(data, dict) else {"eval": data}
        self.device = torch.device(device)
        self.precision = Precision.parse(precision)
        self.microbatch_size = microbatch_size
        self._metrics: dict[str, dict[str, Any]] = {}

    def metrics_for(self, model: TrainableModel, label: str) -> dict[str, Any]:
        """This label's metric objects (made once from the model, moved to the device)."""
        if label not in self._metrics:
            metrics = model.metrics(train=False)
            for metric in metrics.values():
                metric.to(self.device)
            self._metrics[label] = metrics
        return self._metrics[label]

    def evaluate(
        self,
        model: torch.nn.Module,
        state: State | None = None,
        fire: Callable[[Event], None] | None = None,
    ) -> Results:
        """Every label's metrics. Inside a run, `state` receives each batch and its outputs
        and `fire` runs the EVAL_* events."""
        with preserved_rng():  # evaluating never shifts the training run's random streams
            return self._evaluate(model, state, fire or (lambda event: None))

    def _evaluate(
        self, model: torch.nn.Module, state: State | None, fire: Callable[[Event], None]
    ) -> Results:
        holder = state if state is not None else _Scratch()
        adapter = unwrap(model)
        was_training = model.training
        model.eval()
        fire(Event.EVAL_START)
        results: Results = {}
        try:
            for label, loader in self.data.items():
                metrics = self.metrics_for(adapter, label)
                for metric in metrics.values():
                    metric.reset()
                with torch.no_grad():
                    for batch in loader:
                        batch = move_to_device(batch, self.device)
                        self._batch(adapter, batch, metrics, holder, fire)
                results[label] = {name: float(metric.compute()) for name, metric in metrics.items()}
        finally:
            model.train(was_training)
        if state is not None:
            state.eval_results = results
        fire(Event.EVAL_END)
        return results

    def _batch(
        self,
        model: TrainableModel,
        batch: Any,
        metrics: dict[str, Any],
        state: State | _Scratch,
        fire: Callable[[Event], None],
    ) -> None:
        size = self.microbatch_size or model.num_samples(batch)
        for microbatch in split_batch(batch, size):
            state.batch = microbatch
            fire(Event.EVAL_BATCH_START)
            fire(Event.EVAL_BEFORE_FORWARD)
            with autocast(self.precision, self.device):
                state.outputs = model.eval_forward(state.batch)
            fire(Event.EVAL_AFTER_FORWARD)
            for metric in metrics.values():
                model.update_metric(state.batch, state.outputs, metric)
            fire(Event.EVAL_BATCH_END)


def metric_names(results: Results) -> dict[str, float]:
    """Flat `metrics/<label>/<name>` keys, as loggers receive them."""
    return {
        f"metrics/{label}/{name}": value
        for label, values in results.items()
        for name, value in values.items()
    }


class PeriodicEvaluation(Callback):
    """Runs an `Evaluator` every `interval` of training (and at the end of the run)."""

    def __init__(
        self,
        evaluator: Evaluator,
        interval: Time | str | int,
        fire: Callable[[Event], None] | None = None,
    ) -> None:
        super().__init__()
        self.evaluator = evaluator
        self.interval = Interval(interval, "eval_interval")
        self.fire = fire

    def _evaluate(self, state: State, logger: Logger) -> None:
        results = self.evaluator.evaluate(state.model, state, self.fire)
        logger.log_metrics(metric_names(results), step=state.timestamp.batch)

    def batch_end(self, state: State, logger: Logger) -> None:
        if self.interval.due(state, Event.BATCH_END):
            self._evaluate(state, logger)

    def epoch_end(self, state: State, logger: Logger) -> None:
        if self.interval.due(state, Event.EPOCH_END):
            self._evaluate(state, logger)
