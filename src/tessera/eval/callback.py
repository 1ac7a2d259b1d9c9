"""`ICLEvaluation`: in-context-learning tasks during training, logged like any eval metric.

    callbacks:
      icl_evaluation: {tasks: [piqa, lambada_openai], interval: 1000ba, limit: 500}

Every `interval` (and at the end of the run) the model is scored on the tasks, examples split
over the ranks, and `metrics/icl/<task>_<n>shot/<metric>` are logged with the time it took
(`time/icl_eval_seconds`, summed over the run). Task files are read when the callback is made,
so a missing file or a typo fails before training starts.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, field_validator

from tessera.core.callback import Callback
from tessera.core.component import ComponentConfig
from tessera.core.errors import UserError
from tessera.core.event import Event
from tessera.core.interval import Interval
from tessera.core.time import TimeValue

if TYPE_CHECKING:
    from tessera.core.logger import Logger
    from tessera.core.state import State
    from tessera.eval.harness import TaskResult


class ICLEvaluationConfig(ComponentConfig):
    tasks: Annotated[list[str], Field(min_length=1)] | str = Field(
        ..., description="task names or task YAML paths (one, or a list)", examples=[["piqa"]]
    )
    interval: TimeValue = Field("1000ba", description="score the tasks every (Time)")
    num_fewshot: list[Annotated[int, Field(ge=0)]] | Annotated[int, Field(ge=0)] | None = Field(
        None, description="few-shot counts, one or a list (default: each task's own)"
    )
    batch_size: int = Field(16, ge=1, description="examples per forward pass")
    limit: int | None = Field(None, ge=1, description="score the first N examples of each task")
    data_dir: str | None = Field(None, description="folder of the task files (default: search)")

    @field_validator("tasks", "num_fewshot", mode="after")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, (str, int)) else value


class ICLEvaluation(Callback):
    """Scores `tasks` (names or task YAML paths) every `interval`."""

    Config = ICLEvaluationConfig

    def __init__(self, config: ICLEvaluationConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        from tessera.eval.tasks import TaskData, load_task

        c = self.config
        self.tasks = [TaskData.load(load_task(str(name)), c.data_dir) for name in c.tasks]
        self.interval = Interval(c.interval, "interval")
        self.num_fewshot = c.num_fewshot
        self.batch_size = c.batch_size
        self.limit = c.limit
        self.seconds = 0.0
        self.latest: list[TaskResult] = []

    def fit_start(self, state: State, logger: Logger) -> None:
        from tessera.parallel.fsdp import is_sharded

        model = state.unwrapped_model
        if is_sharded(model):
            raise UserError(
                "icl_evaluation: the model is sharded (FSDP), and each rank scores different "
                "examples; use DDP for runs with in-training task evaluation, or evaluate the "
                "final model with `tessera eval RUN --tasks ...`."
            )
        if getattr(model, "tokenizer", None) is None or not hasattr(model, "run"):
            raise UserError(
                "icl_evaluation: needs a GPT with a tokenizer (model.tokenizer in the recipe) "
                "to turn task text into tokens."
            )

    def batch_end(self, state: State, logger: Logger) -> None:
        if self.interval.due(state, Event.BATCH_END):
            self.run(state, logger)

    def epoch_end(self, state: State, logger: Logger) -> None:
        if self.interval.due(state, Event.EPOCH_END):
            self.run(state, logger)

    def run(self, state: State, logger: Logger) -> list[TaskResult]:
        """Score every task now and log the metrics."""
        from tessera.eval.harness import evaluate_task
        from tessera.eval.models import TesseraModel

        start = time.perf_counter()
        model = state.unwrapped_model
        was_training = model.training
        model.eval()
        scorer = TesseraModel(model, model.tokenizer, autocast=state.precision.autocast_dtype)
        results = []
        try:
            for task in self.tasks:
                for count in self.num_fewshot or task.spec.num_fewshot:
                    results.append(evaluate_task(scorer, task, count, self.batch_size, self.limit))
        finally:
            model.train(was_training)
        self.seconds += time.perf_counter() - start
        metrics: dict[str, float] = {
            f"metrics/icl/{r.task}_{r.num_fewshot}shot/{name}": value
            for r in results
            for name, value in r.metrics.items()
        }
        metrics["time/icl_eval_seconds"] = self.seconds
        logger.log_metrics(metrics, step=state.timestamp.batch)
        self.latest = results
        return results

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seconds = float(state.get("seconds", 0.0))
