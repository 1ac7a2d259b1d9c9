import time

import pytest
import torch

from tessera.core.algorithm import Algorithm
from tessera.core.callback import Callback
from tessera.core.engine import Engine, order_algorithms
from tessera.core.errors import ConfigError
from tessera.core.event import Event
from tessera.core.logger import Logger
from tessera.core.state import State
from tessera.core.time import Time


def make(name, before=(), after=(), conflicts=(), log=None):
    class Named(Algorithm):
        def match(self, event, state):
            return event == Event.BATCH_START

        def apply(self, event, state, logger):
            log.append(self.name)

    Named.name, Named.runs_before, Named.runs_after, Named.conflicts = (
        name,
        tuple(before),
        tuple(after),
        tuple(conflicts),
    )
    return Named()


def names(algorithms):
    return [a.name for a in algorithms]


def test_order_keeps_given_order_without_constraints():
    assert names(order_algorithms([make("a"), make("b"), make("c")])) == ["a", "b", "c"]


def test_order_honours_before_and_after():
    ordered = order_algorithms([make("aug", after=["resize"]), make("x"), make("resize")])
    assert names(ordered).index("resize") < names(ordered).index("aug")
    ordered = order_algorithms([make("a"), make("b", before=["a"])])
    assert names(ordered) == ["b", "a"]


def test_conflict_names_both_methods():
    with pytest.raises(ConfigError, match="'mixup' and 'cutmix'"):
        order_algorithms([make("mixup", conflicts=["cutmix"]), make("cutmix")])


def test_cycle_is_refused():
    with pytest.raises(ConfigError, match="contradict"):
        order_algorithms([make("a", before=["b"]), make("b", before=["a"])])


def _state():
    return State(
        model=torch.nn.Linear(2, 2), max_duration=Time.parse("1ep"), device=torch.device("cpu")
    )


def test_engine_runs_algorithms_then_callbacks_and_profiles():
    log = []

    class Slow(Callback):
        def batch_start(self, state, logger):
            time.sleep(0.02)
            log.append("callback")

    engine = Engine(
        _state(),
        Logger(),
        [make("b", log=log), make("a", before=["b"], log=log)],
        [Slow()],
        profile=True,
    )
    engine.run_event(Event.BATCH_START)
    engine.run_event(Event.BATCH_END)
    assert log == ["a", "b", "callback"]
    slowest = engine.timing_report()[0]
    assert slowest[0] == "batch_start" and slowest[1] == "Slow" and slowest[2] >= 0.02
