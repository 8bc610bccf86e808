"""The job's metrics over HTTP, in Prometheus's exposition format, while it runs.

``replay --metrics-port N`` and ``run --metrics-port N`` serve
``http://HOST:N/metrics`` from the process the Python workers run in (a replay's
and a LOOPBACK live job's own process) with prometheus_client's server: the
counters and distributions of ``transforms.metrics``, and for a live job with a
consumer group the Kafka consumer lag, read from the broker at each scrape
(``KafkaLag``). ``ops/prometheus`` holds alert rules, ``ops/grafana`` a dashboard.
"""

from __future__ import annotations

import logging
import threading
import time

import prometheus_client
from prometheus_client.core import GaugeMetricFamily

from pipelines.checks import InputError

log = logging.getLogger(__name__)
_LOCK = threading.Lock()
_SERVERS: dict = {}  # (host, port) -> the server, once per process
_INFO = prometheus_client.Gauge(
    "microtarget_job_info",
    "1 for each job this process runs (labels: its run id, runner and Redis namespace)",
    ("run_id", "runner", "namespace"),
)


def serve(port: int, host: str = "127.0.0.1", option: str = "--metrics-port") -> int:
    """Serve this process's metrics on ``host:port`` (0: a free port); the port.

    Once per process and address: a second job in the same process shares it.
    """
    if not 0 <= port <= 65535:
        raise InputError(f"{option} {port} is not a TCP port (0 to 65535)")
    with _LOCK:
        running = _SERVERS.get((host, port))
        if running is not None:
            return running.server_port
        try:
            server, _thread = prometheus_client.start_http_server(port, addr=host)
        except OSError as exc:
            raise InputError(f"{option} {port}: cannot serve metrics on {host}: {exc}") from None
        _SERVERS[(host, port)] = server
        _SERVERS[(host, server.server_port)] = server
        log.info("metrics on http://%s:%d/metrics", host, server.server_port)
        return server.server_port


def job_started(run_id: str, runner: str, namespace: str) -> None:
    _INFO.labels(run_id=run_id, runner=runner, namespace=namespace).set(1)


def job_ended(run_id: str, runner: str, namespace: str) -> None:
    _INFO.remove(run_id, runner, namespace)


class KafkaLag:
    """``microtarget_kafka_consumer_lag{topic,partition}``: a consumer group's lag.

    The newest offset of each partition minus the offset the group committed (the
    Kafka read commits as checkpoints finalize, so the lag includes what the
    newest checkpoint has not covered). A partition without a committed offset
    counts from its oldest. Read at each scrape; a broker that does not answer
    gives no samples and ``microtarget_kafka_lag_read_errors_total`` counts it.
    """

    def __init__(self, bootstrap: str, topic: str, group_id: str, timeout_s: float = 5.0):
        self._bootstrap = bootstrap
        self._topic = topic
        self._group = group_id
        self._timeout = timeout_s
        self._consumer = None
        self._errors = prometheus_client.Counter(
            "microtarget_kafka_lag_read_errors",
            "Scrapes whose Kafka consumer lag could not be read",
            registry=None,
        )

    def describe(self):
        return []  # registered without a first read of the broker

    def _open(self):
        from confluent_kafka import Consumer

        if self._consumer is None:
            self._consumer = Consumer(
                {
                    "bootstrap.servers": self._bootstrap,
                    "group.id": self._group,
                    "enable.auto.commit": False,
                    "log_level": 0,
                }
            )
        return self._consumer

    def lags(self) -> dict[int, int]:
        """Partition -> messages the group has not committed yet."""
        from confluent_kafka import TopicPartition

        consumer = self._open()
        topic = consumer.list_topics(self._topic, timeout=self._timeout).topics[self._topic]
        partitions = [TopicPartition(self._topic, p) for p in sorted(topic.partitions)]
        committed = consumer.committed(partitions, timeout=self._timeout)
        lags = {}
        for part in committed:
            low, high = consumer.get_watermark_offsets(part, timeout=self._timeout)
            start = part.offset if part.offset >= 0 else low
            lags[part.partition] = max(0, high - start)
        return lags

    def collect(self):
        family = GaugeMetricFamily(
            "microtarget_kafka_consumer_lag",
            "Messages of the source topic the job's consumer group has not committed",
            labels=("topic", "partition"),
        )
        errors = 0
        started = time.monotonic()
        try:
            for partition, lag in self.lags().items():
                family.add_metric((self._topic, str(partition)), lag)
        except Exception as exc:  # the broker is away: no samples this scrape
            errors = 1
            log.warning("Kafka consumer lag of %s not read: %s", self._group, exc)
        self._errors.inc(errors)
        yield family
        yield from self._errors.collect()
        log.debug("Kafka lag read in %.3f s", time.monotonic() - started)

    def close(self):
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def watch_kafka_lag(bootstrap: str, topic: str, group_id: str) -> KafkaLag:
    collector = KafkaLag(bootstrap, topic, group_id)
    prometheus_client.REGISTRY.register(collector)
    return collector


def unwatch(collector: KafkaLag) -> None:
    prometheus_client.REGISTRY.unregister(collector)
    collector.close()
