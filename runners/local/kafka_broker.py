"""A real Apache Kafka broker on 127.0.0.1, in KRaft mode (broker and controller in one).

The broker's jars come from ``runners/local/jvm/kafka/pom.xml`` (``make jvm-deps``);
``KafkaServer`` formats a fresh log folder, starts ``kafka.Kafka`` on free
ports and stops it by its PID. ``ensure_embedded(dir)`` starts one detached
broker whose pid and ports live in ``dir`` (reused while it runs): that is
``make kafka-up`` / ``microtarget kafka up``; ``stop_embedded(dir)`` is
``make kafka-down``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from runners.local import jvm
from runners.local.redis_server import free_port

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = warn
logger.apache.name = org.apache.kafka
logger.apache.level = warn
"""


def _properties(port: int, controller_port: int, data: Path) -> str:
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={data / 'logs'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            # Recorded clickstreams carry old event times: keep them, whatever their age.
            "log.retention.ms=-1",
            "auto.create.topics.enable=false",
            "",
        ]
    )


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-1500:]
    except OSError:
        return "(no log)"


def _launch(data: Path, port: int, controller_port: int, detached: bool) -> subprocess.Popen:
    data.mkdir(parents=True, exist_ok=True)
    props = data / "server.properties"
    props.write_text(_properties(port, controller_port, data))
    log = data / "kafka.log"
    (data / "log4j2.properties").write_text(LOG4J2.format(log=log))
    java, cp = jvm.java(), jvm.classpath("kafka")
    if not (data / "logs" / "meta.properties").exists():
        formatted = subprocess.run(
            # "=": a random id may start with "-", which would read as an option.
            [java, "-cp", cp, "kafka.tools.StorageTool", "format", f"--cluster-id={_cluster_id()}"]
            + ["-c", str(props), "--ignore-formatted"],
            capture_output=True,
            text=True,
        )
        if formatted.returncode != 0:
            raise RuntimeError(f"kafka storage format failed: {formatted.stderr[-1500:]}")
    command = [
        java,
        "-Xms256m",
        "-Xmx768m",
        f"-Dlog4j2.configurationFile={data / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={data}",
        "-cp",
        cp,
        "kafka.Kafka",
        str(props),
    ]
    with open(data / "kafka.out", "ab") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=detached,
        )


def _wait_ready(bootstrap: str, process: subprocess.Popen | None, data: Path) -> None:
    from confluent_kafka.admin import AdminClient

    host, port = bootstrap.rsplit(":", 1)
    deadline = time.monotonic() + START_TIMEOUT_S
    admin = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"kafka exited with {process.returncode}: {_tail(data / 'kafka.out')}"
            )
        if admin is None:
            # The client logs every refused connection: wait for the port first.
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex((host, int(port))) != 0:
                    time.sleep(0.1)
                    continue
            admin = AdminClient({"bootstrap.servers": bootstrap})
        try:
            if admin.list_topics(timeout=1).brokers:
                return
        except Exception:  # KafkaException while the broker is starting
            time.sleep(0.2)
    raise RuntimeError(f"kafka at {bootstrap} not ready after {START_TIMEOUT_S} s")


def _stop_pid(pid: int, process: subprocess.Popen | None = None) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _alive(pid, process) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid, process):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if process is not None:
            process.wait()


def _alive(pid: int, process: subprocess.Popen | None = None) -> bool:
    if process is not None:
        return process.poll() is None
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class KafkaServer:
    """A Kafka broker child process on 127.0.0.1 and free ports, stopped by its PID."""

    def __init__(self, data_dir: str | Path, port: int | None = None):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.controller_port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, topic: str) -> str:
        """``kafka://127.0.0.1:PORT/TOPIC``, as ``--source`` and ``--sink`` take it."""
        return f"kafka://{self.bootstrap}/{topic}"

    def start(self) -> KafkaServer:
        self.process = _launch(self.data_dir, self.port, self.controller_port, detached=False)
        try:
            _wait_ready(self.bootstrap, self.process, self.data_dir)
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            _stop_pid(self.process.pid, self.process)
            self.process = None

    def __enter__(self) -> KafkaServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _read_state(directory: Path) -> tuple[int, int] | None:
    try:
        return int((directory / "kafka.pid").read_text()), int(
            (directory / "kafka.port").read_text()
        )
    except (OSError, ValueError):
        return None


def ensure_embedded(directory: str | Path) -> str:
    """Bootstrap address of the detached broker in ``directory``, starting it if needed."""
    directory = Path(directory).resolve()
    state = _read_state(directory)
    if state is not None and _alive(state[0]):
        bootstrap = f"127.0.0.1:{state[1]}"
        _wait_ready(bootstrap, None, directory)
        return bootstrap
    port, controller = free_port(), free_port()
    process = _launch(directory, port, controller, detached=True)
    (directory / "kafka.pid").write_text(str(process.pid))
    (directory / "kafka.port").write_text(str(port))
    bootstrap = f"127.0.0.1:{port}"
    _wait_ready(bootstrap, process, directory)
    return bootstrap


def stop_embedded(directory: str | Path) -> bool:
    """Stop the detached broker of ``directory`` by its PID; False if it was not running."""
    directory = Path(directory).resolve()
    state = _read_state(directory)
    if state is None:
        return False
    running = _alive(state[0])
    if running:
        _stop_pid(state[0])
    for name in ("kafka.pid", "kafka.port"):
        (directory / name).unlink(missing_ok=True)
    return running
