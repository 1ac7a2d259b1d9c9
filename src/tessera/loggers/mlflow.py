"""`MLflowLogger`: metrics, hyperparameters and the run's end state in an MLflow tracking store.

    loggers:
      mlflow: {tracking_uri: "sqlite:///mlflow.db", experiment: fashion-mnist}

Needs `pip install 'tessera-train[mlflow]'` (mlflow-skinny plus SQLAlchemy/Alembic for SQLite
stores), imported only when the logger is made. `tracking_uri` left unset uses MLflow's own
setting (`MLFLOW_TRACKING_URI`, else its default). The MLflow run is named after the Tessera
run; metric names keep their slashes (`loss/train`); hyperparameters are flattened to dotted
keys (`optimizer.lr`) and written as MLflow params (values cut to MLflow's 6,000 characters).
Only rank 0 writes. The client API is used (no global active run), so two loggers in one
process do not interfere.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import Field

from tessera.core.component import ComponentConfig
from tessera.core.errors import UserError
from tessera.core.logger import LoggerDestination

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State

_PARAM_LIMIT = 6000


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError as error:
        raise UserError(
            "loggers.mlflow needs the 'mlflow' package, which is not installed; run "
            "pip install 'tessera-train[mlflow]' or remove the mlflow logger"
        ) from error
    return mlflow


class MLflowConfig(ComponentConfig):
    tracking_uri: str | None = Field(None, description="MLflow tracking store (default: MLflow's)")
    experiment: str = Field("tessera", min_length=1, description="experiment name")
    run_name: str | None = Field(None, description="run name (default: the run's name)")
    tags: dict[str, str] = Field(default_factory=dict, description="tags on the MLflow run")


class MLflowLogger(LoggerDestination):
    Config = MLflowConfig

    def __init__(self, config: MLflowConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        tracking_uri, experiment = self.config.tracking_uri, self.config.experiment
        run_name, tags = self.config.run_name, self.config.tags
        self._mlflow = _mlflow()  # fail at build time, not mid-run
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.active = True
        self.run_id: str | None = None
        self.finished = False
        self._client: Any = None
        self._pending_params: dict[str, Any] = {}

    def init(self, state: State, logger: Logger) -> None:
        self.active = state.rank == 0
        if self.run_name is None:
            self.run_name = state.run_name

    def _run(self) -> tuple[Any, str]:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
            found = self._client.get_experiment_by_name(self.experiment)
            experiment_id = (
                found.experiment_id if found else self._client.create_experiment(self.experiment)
            )
            run = self._client.create_run(experiment_id, run_name=self.run_name, tags=self.tags)
            self.run_id = run.info.run_id
        assert self.run_id is not None
        return self._client, self.run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if not self.active:
            return
        from mlflow.entities import Metric

        client, run_id = self._run()
        now = int(time.time() * 1000)
        batch = [Metric(name, float(value), now, step) for name, value in metrics.items()]
        client.log_batch(run_id, metrics=batch)

    def log_hyperparameters(self, hyperparameters: dict[str, Any]) -> None:
        if not self.active:
            return
        from mlflow.entities import Param

        client, run_id = self._run()
        flat = _flatten(hyperparameters)
        params = [Param(key, str(value)[:_PARAM_LIMIT]) for key, value in sorted(flat.items())]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params a call
            client.log_batch(run_id, params=params[start : start + 100])

    def fit_end(self, state: State, logger: Logger) -> None:
        self._finish("FINISHED")

    def close(self, state: State, logger: Logger) -> None:
        self._finish("FAILED")  # only reached unfinished when the run ended with an error

    def _finish(self, status: str) -> None:
        if self._client is not None and self.run_id is not None and not self.finished:
            self._client.set_terminated(self.run_id, status=status)
            self.finished = True


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
