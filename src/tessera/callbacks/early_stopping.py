"""Stopping on evaluation results: `EarlyStopper` (no more progress) and `ThresholdStopper`.

Both look at `state.eval_results` after each evaluation (EVAL_END) and call
`state.request_stop(reason)`; the trainer ends the run after the current batch. Evaluation
metrics are reduced over all ranks, so every rank reaches the same decision.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, PlainSerializer, PlainValidator

from tessera.core.callback import Callback
from tessera.core.component import ComponentConfig
from tessera.core.errors import ConfigError, did_you_mean
from tessera.core.time import Time

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State


def parse_monitor(monitor: str) -> tuple[str, str]:
    """'metrics/eval/accuracy' or 'eval/accuracy' -> ('eval', 'accuracy')."""
    parts = monitor.split("/") if isinstance(monitor, str) else []
    if len(parts) == 3 and parts[0] == "metrics":
        parts = parts[1:]
    if len(parts) != 2 or not all(parts):
        raise ValueError(
            "it does not name an evaluation metric; write 'metrics/<label>/<metric>' or "
            "'<label>/<metric>', e.g. 'metrics/eval/accuracy'"
        )
    return parts[0], parts[1]


def _monitor(value: str) -> str:
    parse_monitor(value)
    return value


def _patience(value: Any) -> int | Time:
    problem = "must be a positive number of evaluations or a time such as '2ep' or '1000ba'"
    if isinstance(value, bool):
        raise ValueError(problem)
    if isinstance(value, int):
        if value < 1:
            raise ValueError(problem)
        return value
    try:
        patience = Time.coerce(value, "patience")
    except ConfigError:
        raise ValueError(problem) from None
    if patience.value <= 0:
        raise ValueError(problem)
    return patience


# An evaluation metric's name, checked for its form here and against the run at INIT.
Monitor = Annotated[str, AfterValidator(_monitor)]
# A number of evaluations (int) or a training time; written back as given.
Patience = Annotated[
    int | Time,
    PlainValidator(_patience, json_schema_input_type=int | str),
    PlainSerializer(lambda value: value if isinstance(value, int) else str(value)),
]
Mode = Literal["max", "min"]
MONITOR_HELP = "evaluation metric: 'metrics/<label>/<metric>' or '<label>/<metric>'"


def check_monitor(state: State, label: str, name: str, where: str) -> None:
    """Refuse, before training starts, a monitor the run's evaluation can never produce."""
    if not state.eval_dataloaders:
        raise ConfigError(
            f"{where}: monitors {label}/{name}, but the run has no evaluation data; give "
            "evaluation data or remove the callback"
        )
    if label not in state.eval_dataloaders:
        raise ConfigError(
            f"{where}.monitor: the run has no evaluation labelled {label!r}; "
            f"{did_you_mean(label, state.eval_dataloaders)}"
        )
    metrics = state.unwrapped_model.metrics(train=False)  # what every evaluation computes
    if metrics and name not in metrics:
        raise ConfigError(
            f"{where}.monitor: evaluation {label!r} computes no metric {name!r}; "
            f"{did_you_mean(name, metrics)}"
        )


def read_monitored(state: State, label: str, name: str) -> float:
    """The monitored value from the latest evaluation; a clear error if it is not there."""
    if label not in state.eval_results:
        raise ConfigError(
            f"monitor: the evaluation produced no results labelled {label!r}; "
            f"{did_you_mean(label, state.eval_results)}"
        )
    results = state.eval_results[label]
    if name not in results:
        raise ConfigError(
            f"monitor: evaluation {label!r} has no metric {name!r}; {did_you_mean(name, results)}"
        )
    return float(results[name])


def _timestamp_record(state: State) -> dict[str, int]:
    ts = state.timestamp
    return {"epoch": ts.epoch, "batch": ts.batch, "sample": ts.sample, "token": ts.token}


class _MonitorsEvaluation(Callback):
    """What both stoppers share: the monitored label and metric, checked against the run."""

    section = ""  # how errors name it: "callbacks.early_stopping"

    @property
    def label(self) -> str:
        return parse_monitor(self.config.monitor)[0]

    @property
    def metric(self) -> str:  # not `name`: Configurable reads that as the registry name
        return parse_monitor(self.config.monitor)[1]

    def init(self, state: State, logger: Logger) -> None:
        check_monitor(state, self.label, self.metric, self.section)


class EarlyStopperConfig(ComponentConfig):
    monitor: Monitor = Field(..., description=MONITOR_HELP, examples=["metrics/eval/accuracy"])
    mode: Mode = Field("min", description="'min': lower is better; 'max': higher is better")
    patience: Patience = Field(
        3,
        description="evaluations without improvement, or training time since the best ('2ep')",
    )
    min_delta: float = Field(0.0, ge=0, description="smallest change that counts as a gain")


class EarlyStopper(_MonitorsEvaluation):
    """Stops when the monitored metric has not improved by `min_delta` for `patience`.

    patience: a number of evaluations (int), or a training time ('2ep', '1000ba', '0.1dur')
    that must pass since the best value without a new best.
    """

    Config = EarlyStopperConfig
    section = "callbacks.early_stopping"

    def __init__(self, config: EarlyStopperConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.best: float | None = None
        self.best_position: float | None = None  # in the patience unit, when patience is a Time
        self.waits = 0  # evaluations since the best
        self.stopped_at: dict[str, int] | None = None

    def _improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.config.mode == "max":
            return value > self.best + self.config.min_delta
        return value < self.best - self.config.min_delta

    def eval_end(self, state: State, logger: Logger) -> None:
        value = read_monitored(state, self.label, self.metric)
        patience = self.config.patience
        unit = state.resolve(patience, "patience").unit if isinstance(patience, Time) else None
        if self._improved(value):
            self.best, self.waits = value, 0
            self.best_position = state.position(unit) if unit is not None else None
            return
        self.waits += 1
        if isinstance(patience, int):
            exhausted = self.waits >= patience
            waited = f"{self.waits} evaluations"
        else:
            assert unit is not None
            budget = state.resolve(patience, "patience").value
            start = self.best_position if self.best_position is not None else 0.0
            exhausted = state.position(unit) - start >= budget
            waited = f"{patience} of training"
        if exhausted and self.stopped_at is None:
            self.stopped_at = _timestamp_record(state)
            state.request_stop(
                f"early stopping: {self.config.monitor} has not improved on {self.best} "
                f"(mode {self.config.mode}, min_delta {self.config.min_delta}) for {waited}"
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_position": self.best_position,
            "waits": self.waits,
            "stopped_at": self.stopped_at,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.best_position = state.get("best_position")
        self.waits = int(state.get("waits", 0))
        self.stopped_at = state.get("stopped_at")


class ThresholdStopperConfig(ComponentConfig):
    monitor: Monitor = Field(..., description=MONITOR_HELP, examples=["metrics/eval/accuracy"])
    threshold: float = Field(..., description="the target value of the metric", examples=[0.9])
    mode: Mode = Field("max", description="'max': reach at least the target; 'min': at most")
    stop: bool = Field(True, description="stop the run when reached (false: only record it)")


class ThresholdStopper(_MonitorsEvaluation):
    """Stops the run the first time the monitored metric crosses `threshold`.

    Records when that happened (training time and wall-clock seconds since the run started,
    counted across resumes) and logs it as `threshold/*`: the measure of time-to-accuracy
    benchmarks. With `stop=False` it only records.
    """

    Config = ThresholdStopperConfig
    section = "callbacks.threshold_stopping"

    def __init__(self, config: ThresholdStopperConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.reached_at: dict[str, Any] | None = None
        self._seconds_before = 0.0  # wall-clock seconds of earlier sessions of a resumed run
        self._started: float | None = None

    def fit_start(self, state: State, logger: Logger) -> None:
        self._started = time.perf_counter()

    def elapsed_seconds(self) -> float:
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self._seconds_before + running

    def _crossed(self, value: float) -> bool:
        if self.config.mode == "max":
            return value >= self.config.threshold
        return value <= self.config.threshold

    def eval_end(self, state: State, logger: Logger) -> None:
        if self.reached_at is not None:
            return
        value = read_monitored(state, self.label, self.metric)
        if not self._crossed(value):
            return
        self.reached_at = {
            **_timestamp_record(state),
            "seconds": self.elapsed_seconds(),
            "value": value,
        }
        logger.log_metrics(
            {f"threshold/{key}": float(item) for key, item in self.reached_at.items()},
            step=state.timestamp.batch,
        )
        if self.config.stop:
            state.request_stop(
                f"threshold reached: {self.config.monitor} = {value:.6g} crossed "
                f"{self.config.threshold} "
                f"at batch {state.timestamp.batch} after {self.reached_at['seconds']:.1f}s"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"reached_at": self.reached_at, "seconds": self.elapsed_seconds()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reached_at = state.get("reached_at")
        self._seconds_before = float(state.get("seconds", 0.0))
        self._started = None
