"""``/metrics``: Prometheus text from the engine's counters, read at scrape time.

The engine keeps the numbers (``Engine.stats()``); the server only adds its HTTP counts.
A private registry: two servers in one process (tests) never share series.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from llamakit import Engine

__all__ = ["Metrics"]


class _EngineCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._last = (time.monotonic(), 0)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily |
                                 SummaryMetricFamily]:
        s = self.engine.stats()
        yield GaugeMetricFamily("llamakit_slots_total", "Slots of the engine (n_parallel).",
                                value=s.n_parallel)
        yield GaugeMetricFamily("llamakit_slots_busy", "Slots running a request now.",
                                value=s.slots_busy)
        yield GaugeMetricFamily("llamakit_queue_depth", "Requests waiting for a slot.",
                                value=s.queue_depth)
        yield GaugeMetricFamily("llamakit_queue_max", "Most requests that may wait.",
                                value=s.max_queue)
        for name, value, text in (
                ("requests", s.requests_total, "Requests the engine accepted."),
                ("requests_cancelled", s.requests_cancelled,
                 "Requests cancelled (client gone, timeout)."),
                ("requests_failed", s.requests_failed, "Requests that ended in an error."),
                ("prompt_tokens", s.prompt_tokens_total, "Prompt tokens admitted."),
                ("cached_prompt_tokens", s.cached_tokens_total,
                 "Prompt tokens reused from a slot's cache."),
                ("generated_tokens", s.generated_tokens_total, "Tokens generated.")):
            yield CounterMetricFamily(f"llamakit_{name}", text, value=value)
        now = time.monotonic()
        with self._lock:
            then, before = self._last
            self._last = (now, s.generated_tokens_total)
        rate = (s.generated_tokens_total - before) / (now - then) if now > then else 0.0
        yield GaugeMetricFamily("llamakit_generated_tokens_per_second",
                                "Generated tokens per second since the previous scrape.",
                                value=rate)
        yield SummaryMetricFamily("llamakit_time_to_first_token_seconds",
                                  "Time from submission to the first generated token.",
                                  count_value=s.ttft_count, sum_value=s.ttft_seconds_sum)
        yield GaugeMetricFamily("llamakit_uptime_seconds", "Seconds since the engine started.",
                                value=s.uptime_seconds)


class Metrics:
    """The registry of one server: the engine's numbers and HTTP responses by status."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_EngineCollector(engine))
        self.http = Counter("llamakit_http_requests", "HTTP requests answered.",
                            ["endpoint", "status"], registry=self.registry)

    def count(self, endpoint: str, status: int) -> None:
        self.http.labels(endpoint=endpoint, status=str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
