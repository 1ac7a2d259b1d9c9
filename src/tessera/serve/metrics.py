"""Server metrics in Prometheus' text format (`GET /metrics`), with no client library.

Counters of requests (by endpoint and status) and tokens, histograms of time to first token,
request latency and step time, and gauges of queue depth and batch occupancy read at scrape
time. The engine thread and the HTTP thread both record, so every update takes a lock.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from typing import Any

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_STEP_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, count in zip(self.buckets, self.counts):
            running += count
            out.append(f'{name}_bucket{{le="{bound}"}} {running}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        out.append(f"{name}_sum {self.total:.6f}")
        out.append(f"{name}_count {self.count}")
        return out


class Metrics:
    """Everything `/metrics` reports."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.finished: dict[str, int] = defaultdict(int)
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.first_token = Histogram(_LATENCY_BUCKETS)
        self.latency = Histogram(_LATENCY_BUCKETS)
        self.step_time = Histogram(_STEP_BUCKETS)
        self.running = 0
        self.slots = 0
        self.queue = 0
        self.occupancy_sum = 0.0
        self.steps = 0

    def observe_request(self, endpoint: str, status: int) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1

    def observe_first_token(self, seconds: float) -> None:
        with self._lock:
            self.first_token.observe(seconds)

    def observe_finish(self, reason: str, prompt: int, generated: int, seconds: float) -> None:
        with self._lock:
            self.finished[reason] += 1
            self.prompt_tokens += prompt
            self.generation_tokens += generated
            self.latency.observe(seconds)

    def observe_step(self, seconds: float, running: int, slots: int, queue: int) -> None:
        with self._lock:
            self.step_time.observe(seconds)
            self.running, self.slots, self.queue = running, slots, queue
            self.occupancy_sum += running / max(slots, 1)
            self.steps += 1

    def render(self, engine: Any = None) -> str:
        """The Prometheus exposition text."""
        with self._lock:
            running = len(engine.running) if engine is not None else self.running
            queue = engine.queue_depth if engine is not None else self.queue
            slots = engine.slots if engine is not None else self.slots
            lines = [
                "# HELP tessera_requests_total HTTP requests answered, by endpoint and status.",
                "# TYPE tessera_requests_total counter",
            ]
            for (endpoint, status), count in sorted(self.requests.items()):
                lines.append(
                    f'tessera_requests_total{{endpoint="{endpoint}",status="{status}"}} {count}'
                )
            lines += [
                "# HELP tessera_sequences_finished_total Sequences ended, by reason.",
                "# TYPE tessera_sequences_finished_total counter",
            ]
            for reason, count in sorted(self.finished.items()):
                lines.append(f'tessera_sequences_finished_total{{reason="{reason}"}} {count}')
            lines += [
                "# TYPE tessera_prompt_tokens_total counter",
                f"tessera_prompt_tokens_total {self.prompt_tokens}",
                "# TYPE tessera_generation_tokens_total counter",
                f"tessera_generation_tokens_total {self.generation_tokens}",
                "# HELP tessera_time_to_first_token_seconds From submission to the first token.",
                "# TYPE tessera_time_to_first_token_seconds histogram",
                *self.first_token.lines("tessera_time_to_first_token_seconds"),
                "# HELP tessera_request_latency_seconds From submission to the last token.",
                "# TYPE tessera_request_latency_seconds histogram",
                *self.latency.lines("tessera_request_latency_seconds"),
                "# HELP tessera_step_seconds One engine step (prefill chunk + decode).",
                "# TYPE tessera_step_seconds histogram",
                *self.step_time.lines("tessera_step_seconds"),
                "# TYPE tessera_queue_depth gauge",
                f"tessera_queue_depth {queue}",
                "# TYPE tessera_running_sequences gauge",
                f"tessera_running_sequences {running}",
                "# TYPE tessera_kv_slots gauge",
                f"tessera_kv_slots {slots}",
                "# HELP tessera_batch_occupancy_mean Mean fraction of slots busy per step.",
                "# TYPE tessera_batch_occupancy_mean gauge",
                f"tessera_batch_occupancy_mean {self.occupancy_sum / max(self.steps, 1):.4f}",
            ]
        return "\n".join(lines) + "\n"
