"""The servers a job runs next to on this machine, each bound to 127.0.0.1 and stopped by its PID.

``redis_server`` (the embedded Redis, and Redis servers for tests),
``kafka_broker`` (a KRaft Kafka broker), ``flink`` (Beam's Flink job server,
the expansion service, the Python worker pool's process), ``worker_pool``
(what runs in that process), ``flink_cluster`` (a standalone Flink cluster)
and ``jvm`` (the Java programs' jars, fetched with ``mvn``).
"""
