"""Beam's Flink job server and a Java expansion service, as local processes.

Beam Python submits to Flink through a job server (``FlinkJobServerDriver``),
which runs the job in an embedded Flink mini-cluster (``flink_master="[local]"``)
or submits it to a Flink cluster's REST address. Cross-language transforms
(Kafka IO) are expanded by a Java expansion service. Both run from the jars of
``runners/local/jvm/flink/pom.xml`` (``make jvm-deps``), on 127.0.0.1 and free ports,
and are stopped by their PIDs. Python workers run in LOOPBACK mode (inside the
submitting process) unless ``--environment_type`` says otherwise.

Beam's own ``FlinkRunner`` would download a shaded job-server jar at run time;
``--flink_job_server_jar`` takes a local one. Neither is used by default
because the shaded jars are not in the registry this project builds from:
the job server here is the same driver class on a classpath of resolved jars.

The Beam Python SDK and that Beam Java (Beam 2.62's runner for Flink 1.19) are
different releases, talking through the portable job API and the expansion
service; ``untested_pair()`` says when a pair has not been through the tests
(``TESTED_PAIRS``), and ``runners.live.run`` logs it as a warning at start.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from runners.local import jvm
from runners.local.kafka_broker import _stop_pid, _tail
from runners.local.redis_server import free_port

START_TIMEOUT_S = 90.0

# (Beam Python SDK, Beam Java of runners/local/jvm/flink/pom.xml) pairs that the Flink tests
# (tests/runners/test_flink_kafka.py) have passed with. Add a pair only after they pass.
TESTED_PAIRS = frozenset({("2.77.0", "2.62.0")})
_RUNNER_JAR = re.compile(r"^beam-runners-flink-(?P<flink>\d+\.\d+)-(?P<beam>\d+\.\d+\.\d+)\.jar$")


def java_versions(lib: str | Path | None = None) -> tuple[str, str] | None:
    """(Beam Java version, Flink version) of the fetched runner jar, or None if not fetched.

    Read from the jar's name, ``beam-runners-flink-1.19-2.62.0.jar`` -> ("2.62.0", "1.19").
    """
    folder = Path(lib) if lib is not None else jvm.lib_dir("flink")
    if not folder.is_dir():
        return None
    for path in sorted(folder.iterdir()):
        match = _RUNNER_JAR.match(path.name)
        if match:
            return match["beam"], match["flink"]
    return None


def untested_pair(python_version: str | None = None, java_version: str | None = None) -> str | None:
    """A warning if the Beam Python SDK and the jars' Beam Java are not a tested pair.

    Defaults: the installed ``apache_beam`` and the fetched jars. None when the pair
    is tested, or when no jars are fetched (starting a service then fails anyway).
    """
    if python_version is None:
        from apache_beam.version import __version__ as python_version
    if java_version is None:
        found = java_versions()
        if found is None:
            return None
        java_version = found[0]
    if (python_version, java_version) in TESTED_PAIRS:
        return None
    tested = ", ".join(f"Python {p} with Java {j}" for p, j in sorted(TESTED_PAIRS))
    return (
        f"Beam Python {python_version} with Beam Java {java_version} (the job server and "
        f"expansion service of {jvm.lib_dir('flink')}) is a pair the tests have not run; "
        f"tested: {tested or 'none'}"
    )


def _wait_listening(service, name: str, log: Path) -> None:
    """Wait until ``service.process`` listens on its port; stop it and raise if it does not."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            code = service.process.returncode
            service.process = None
            raise RuntimeError(f"{name} exited with {code}: {_tail(log)}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", service.port)) == 0:
                return
        time.sleep(0.2)
    service.stop()
    raise RuntimeError(f"{name} not listening on {service.endpoint} after {START_TIMEOUT_S} s")


class JavaService:
    """A Java main class on the Flink jars' classpath, listening on 127.0.0.1:``port``."""

    main_class = ""
    name = "java"

    def __init__(self, log_dir: str | Path, port: int | None = None, heap: str = "1g"):
        self.log_dir = Path(log_dir)
        self.port = port or free_port()
        self.heap = heap
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def arguments(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> JavaService:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{self.name}.log"
        command = [
            jvm.java(),
            f"-Xmx{self.heap}",
            *jvm.JAVA_OPENS,
            "-cp",
            jvm.classpath("flink"),
            self.main_class,
            *self.arguments(),
        ]
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        _wait_listening(self, self.name, log)
        return self

    def stop(self) -> None:
        if self.process is not None:
            _stop_pid(self.process.pid, self.process)
            self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ExpansionService(JavaService):
    """Expands Java transforms (Kafka IO).

    For Flink (``embedded``): the transforms run in the EMBEDDED environment,
    inside the Flink task, and ``use_deprecated_read`` expands ``KafkaIO.Read``
    to the unbounded-source read that the Flink runner translates natively (its
    watermark follows the records' CreateTime and, once caught up, the wall
    clock); the SDF read of Beam 2.56 on the portable Flink runner read nothing
    in a trial here. For Dataflow: Beam's default Java SDK container.
    """

    main_class = "org.apache.beam.sdk.expansion.service.ExpansionService"
    name = "expansion-service"

    def __init__(self, log_dir: str | Path, embedded: bool = True, **kwargs):
        super().__init__(log_dir, **kwargs)
        self.embedded = embedded

    def arguments(self) -> list[str]:
        if not self.embedded:
            return [str(self.port)]
        return [
            str(self.port),
            "--defaultEnvironmentType=EMBEDDED",
            "--experiments=use_deprecated_read",
        ]


class FlinkJobServer(JavaService):
    """Beam's Flink job server; ``flink_master`` is ``[local]`` or a cluster's HOST:PORT."""

    main_class = "org.apache.beam.runners.flink.FlinkJobServerDriver"
    name = "flink-job-server"

    def __init__(self, log_dir: str | Path, flink_master: str = "[local]", **kwargs):
        super().__init__(log_dir, **kwargs)
        self.flink_master = flink_master
        self.artifact_port = free_port()

    def arguments(self) -> list[str]:
        return [
            "--job-host=127.0.0.1",
            f"--job-port={self.port}",
            f"--artifact-port={self.artifact_port}",
            "--expansion-port=0",
            f"--flink-master={self.flink_master}",
            f"--artifacts-dir={self.log_dir / 'artifacts'}",
        ]


class WorkerPool:
    """A Python worker pool (``runners.local.worker_pool``): a worker process per Flink task slot.

    LOOPBACK workers share this process and its interpreter lock, so a
    parallelism above 1 gains nothing; with the pool (EXTERNAL environment)
    each parallel instance runs in its own Python process, with the job's
    state cache and this project's worker changes. Stopped with its workers
    (its own process group) by PID.
    """

    def __init__(self, log_dir: str | Path, port: int | None = None):
        self.log_dir = Path(log_dir)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> WorkerPool:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / "worker-pool.log", "ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "runners.local.worker_pool",
                    f"--service_port={self.port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its workers join its process group
                cwd=jvm.ROOT,  # the workers import this project's modules
            )
        _wait_listening(self, "worker pool", self.log_dir / "worker-pool.log")
        return self

    def stop(self) -> None:
        import contextlib
        import signal

        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)  # the pool and its workers
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
