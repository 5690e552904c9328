"""GET /metrics: a Prometheus collector that computes every figure at scrape time from the ledger,
the counters the workers keep in Redis (tasks/store/metrics.py) and the broker, so a restart of
the service (or of a worker) loses nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import redis
from kombu import Connection
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from config import Settings
from config.queues import QUEUES
from producers.serve.models import STATES
from tasks.limits.limiter import Limiter
from tasks.outputs.webhooks import Deliveries
from tasks.store.ledger import Ledger, redis_now
from tasks.store.metrics import (
    LATENCY_BUCKETS_S,
    ApiCallCounter,
    oldest_open_age_s,
    read_event_totals,
)

__all__ = ["CutoutCollector", "registry_for"]

log = logging.getLogger(__name__)

BROKER_TIMEOUT_S = 2.0


def registry_for(settings: Settings, client: redis.Redis) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CutoutCollector(settings, client))
    return registry


class CutoutCollector(Collector):
    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.settings = settings
        self.redis = client
        self.ledger = Ledger(client)
        self.limiter = Limiter(client, settings)
        self.api_calls = ApiCallCounter(client)
        self.deliveries = Deliveries(client)

    def describe(self) -> list[Metric]:
        return []  # nothing is read when the collector is registered

    def collect(self) -> Iterator[Metric]:
        yield self._jobs()
        yield self._queues()
        yield from self._calls()
        now = redis_now(self.redis)
        totals = read_event_totals(self.redis, now)
        yield CounterMetricFamily("cutout_credits_spent", "Credits (ConsumeApiPoint) of the "
                                  "finished jobs", value=totals.credits)
        finished = CounterMetricFamily("cutout_jobs_finished", "Jobs finished, by event",
                                       labels=["event"])
        for event, n in totals.finished.items():
            finished.add_metric([event], n)
        yield finished
        yield GaugeMetricFamily("cutout_oldest_open_job_age_seconds", "Age of the oldest job "
                                "not yet finished (among the 100 that changed least recently)",
                                value=oldest_open_age_s(self.redis, now))
        yield GaugeMetricFamily("cutout_results_expiring_within_seconds", "Submitted jobs whose "
                                "results the API deletes within the hour (24 h after the "
                                "submit) and that are not collected yet",
                                value=totals.expiring_soon)
        yield GaugeMetricFamily("cutout_limiter_rate_factor", "Share of CUTOUT_RATE_LIMIT the "
                                "limiter allows now (below 1 after a throttle)",
                                value=self.limiter.rate_factor())
        yield GaugeMetricFamily("cutout_webhook_deliveries_pending", "Webhook deliveries not "
                                "yet delivered nor given up", value=self.deliveries.pending())
        yield self._latency(totals.latency_buckets, totals.latency_sum_s)

    def _jobs(self) -> Metric:
        counts = self.ledger.state_counts()
        jobs = GaugeMetricFamily("cutout_jobs", "Jobs by state", labels=["state"])
        for state in STATES:
            jobs.add_metric([state], counts.get(state, 0))
        return jobs

    def _calls(self) -> Iterator[Metric]:
        calls = CounterMetricFamily("cutout_api_calls", "API calls by action and outcome "
                                    "(ok, or the error's code)", labels=["action", "outcome"])
        throttled = 0
        for (action, outcome), n in sorted(self.api_calls.read().items()):
            calls.add_metric([action, outcome], n)
            throttled += n if outcome == "throttled" else 0
        yield calls
        yield CounterMetricFamily("cutout_throttled", "API answers that said throttled",
                                  value=throttled)

    def _queues(self) -> Metric:
        queues = GaugeMetricFamily("cutout_queue_messages", "Messages waiting in each queue of "
                                   "the broker (not those a worker holds)", labels=["queue"])
        try:
            with Connection(self.settings.broker, connect_timeout=BROKER_TIMEOUT_S) as conn:
                for name in QUEUES:
                    queues.add_metric([name], _queue_size(conn, name))
        except Exception as exc:  # the broker is away: the other figures still count
            log.warning("cannot read the queues from the broker: %s", exc)
        return queues

    @staticmethod
    def _latency(counts: tuple[int, ...], total_s: float) -> Metric:
        buckets, running = [], 0
        for bound, n in zip([*map(str, LATENCY_BUCKETS_S), "+Inf"], counts, strict=True):
            running += n
            buckets.append((bound, float(running)))
        return HistogramMetricFamily("cutout_job_latency_seconds", "Seconds from a job's "
                                     "submit (TaskUID recorded) to its end", buckets=buckets,
                                     sum_value=total_s)


def _queue_size(conn: Connection, name: str) -> int:
    """Messages in one queue; 0 when it does not exist yet. A channel per queue: a failed
    passive declare closes the channel on RabbitMQ."""
    channel = conn.channel()
    try:
        return int(channel.queue_declare(queue=name, passive=True).message_count)
    except conn.channel_errors:
        return 0
    finally:
        with contextlib.suppress(Exception):  # already closed by the broker
            channel.close()
