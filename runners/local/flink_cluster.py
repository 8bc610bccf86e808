"""A standalone Apache Flink 1.19 session cluster on 127.0.0.1, started with Flink's scripts.

Beam's Flink runner here is built for Flink 1.19 (``runners/local/jvm/flink/pom.xml``),
so the cluster is Flink 1.19.3. Its distribution comes from the Python index:
the jars (``lib/``, ``opt/``, ``plugins/``) from ``apache-flink-libraries``,
the ``bin/`` scripts and default ``conf/`` from the ``apache-flink`` wheel (the
CPython 3.11 build; only its files are used, nothing is installed, so the
apache-beam it pins never meets this project's).
``fetch_distribution()`` assembles ``build/flink-dist/flink-1.19.3`` with
``pip download`` (pip's cache makes it quick the second time).

``FlinkCluster`` writes a configuration (``conf/config.yaml``, the standard
YAML file Flink 1.19 reads; a ``flink-conf.yaml`` would take precedence, so none
is left there) that binds everything to 127.0.0.1 on free ports, runs
``bin/start-cluster.sh`` (one JobManager, one TaskManager with two slots; the
``workers`` file says 127.0.0.1, so no ssh) and stops the two processes by the
PIDs the scripts wrote. ``microtarget flink up|down|url`` (and ``make flink-up`` /
``make flink-down``) keep one running in ``.microtarget/flink-cluster``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path

from runners.local import jvm
from runners.local.kafka_broker import _alive, _stop_pid
from runners.local.redis_server import free_port

VERSION = "1.19.3"
DIST = jvm.BUILD.parent / "flink-dist"
HOME = DIST / f"flink-{VERSION}"
START_TIMEOUT_S = 90.0

# Flink 1.19 on Java 17: Flink's own list (the distribution's config.yaml, which this
# project's configuration replaces) and what Beam and Kafka reach into (jvm.JAVA_OPENS).
JAVA_OPTS = " ".join(
    [
        "--add-exports=java.base/sun.net.util=ALL-UNNAMED",
        "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
        "--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
        *jvm.JAVA_OPENS,
        "--add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED",
    ]
)


def _pip_download(target: Path, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(target), *args],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise jvm.MissingJars(f"pip could not download {args[-1]}: {done.stderr[-1500:]}")


def fetch_distribution() -> Path:
    """Assemble the Flink distribution (lib, opt, plugins, bin, conf) unless it is there."""
    stamp = HOME / ".assembled"
    if stamp.exists():
        return HOME
    downloads = DIST / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    _pip_download(downloads, "--no-binary", ":all:", f"apache-flink-libraries=={VERSION}")
    _pip_download(
        downloads,
        "--only-binary",
        ":all:",
        "--python-version",
        "3.11",
        "--platform",
        "manylinux1_x86_64",
        f"apache-flink=={VERSION}",
    )
    if HOME.exists():
        shutil.rmtree(HOME)
    staging = DIST / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(downloads / f"apache-flink-libraries-{VERSION}.tar.gz") as sdist:
        sdist.extractall(staging, filter="data")
    deps = staging / f"apache-flink-libraries-{VERSION}" / "deps"
    wheel = next(downloads.glob(f"apache_flink-{VERSION}-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        members = [n for n in archive.namelist() if n.startswith(("pyflink/bin/", "pyflink/conf/"))]
        archive.extractall(staging / "wheel", members)
    HOME.mkdir(parents=True)
    for part in ("lib", "opt", "plugins"):
        shutil.move(str(deps / part), HOME / part)
    shutil.move(str(staging / "wheel" / "pyflink" / "bin"), HOME / "bin")
    shutil.move(str(staging / "wheel" / "pyflink" / "conf"), HOME / "conf")
    shutil.copy(deps / "bin" / "bash-java-utils.jar", HOME / "bin")
    for script in (HOME / "bin").iterdir():
        script.chmod(0o755)
    shutil.rmtree(staging)
    stamp.write_text(VERSION + "\n")
    return HOME


def _conf(ports: dict[str, int], home: Path) -> str:
    """``config.yaml`` for Flink 1.19: flat keys, every value a YAML 1.2 scalar."""
    lines = {
        "jobmanager.rpc.address": "127.0.0.1",
        "jobmanager.rpc.port": ports["rpc"],
        "jobmanager.bind-host": "127.0.0.1",
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.host": "127.0.0.1",
        "taskmanager.rpc.port": ports["tm_rpc"],
        "taskmanager.data.port": ports["data"],
        "blob.server.port": ports["blob"],
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "rest.port": ports["rest"],
        "taskmanager.numberOfTaskSlots": 2,
        "parallelism.default": 1,
        "jobmanager.memory.process.size": "1024m",
        "taskmanager.memory.process.size": "1536m",
        "io.tmp.dirs": str(home / "tmp"),
        "env.java.opts.all": JAVA_OPTS,
    }
    # json.dumps quotes strings as YAML double-quoted scalars and leaves numbers plain.
    return "".join(f"{name}: {json.dumps(value)}\n" for name, value in lines.items())


class FlinkCluster:
    """A Flink session cluster of one JobManager and one TaskManager, on free ports."""

    def __init__(self, home: str | Path, rest_port: int | None = None):
        self.home = Path(home).resolve()
        self.ports = {
            "rest": rest_port or free_port(),
            **{name: free_port() for name in ("rpc", "tm_rpc", "data", "blob")},
        }

    @property
    def rest(self) -> str:
        return f"127.0.0.1:{self.ports['rest']}"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "FLINK_CONF_DIR": str(self.home / "conf"),
            "FLINK_LOG_DIR": str(self.home / "log"),
            "FLINK_PID_DIR": str(self.home / "pid"),
            "FLINK_IDENT_STRING": "microtarget",
        }

    def pids(self) -> list[int]:
        """PIDs the start scripts wrote (JobManager, TaskManager)."""
        found = []
        for path in sorted((self.home / "pid").glob("flink-microtarget-*.pid")):
            found += [int(line) for line in path.read_text().split() if line.strip().isdigit()]
        return found

    def start(self) -> FlinkCluster:
        dist = fetch_distribution()
        conf = self.home / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        for name in ("log4j.properties", "log4j-cli.properties", "log4j-console.properties"):
            shutil.copy(dist / "conf" / name, conf / name)
        # Flink 1.19 prefers a flink-conf.yaml (its old format) over config.yaml: a
        # folder kept from a Flink 1.16 cluster still has one.
        (conf / "flink-conf.yaml").unlink(missing_ok=True)
        (conf / "config.yaml").write_text(_conf(self.ports, self.home))
        (conf / "workers").write_text("127.0.0.1\n")
        (conf / "masters").write_text(f"127.0.0.1:{self.ports['rest']}\n")
        for folder in ("log", "pid", "tmp"):
            (self.home / folder).mkdir(exist_ok=True)
        done = subprocess.run(
            [str(dist / "bin" / "start-cluster.sh")],
            env=self._env(),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"start-cluster.sh failed: {done.stdout[-800:]}{done.stderr[-800:]}")
        try:
            self._wait_ready()
        except RuntimeError:
            self.stop()
            raise
        return self

    def taskmanager_pids(self) -> list[int]:
        """PIDs of the TaskManagers the scripts started, those still alive."""
        found = []
        for path in sorted((self.home / "pid").glob("flink-microtarget-taskexecutor*.pid")):
            found += [int(line) for line in path.read_text().split() if line.strip().isdigit()]
        return [pid for pid in found if _alive(pid)]

    def start_taskmanager(self) -> None:
        """One more TaskManager (``bin/taskmanager.sh start``), as after one died."""
        done = subprocess.run(
            [str(fetch_distribution() / "bin" / "taskmanager.sh"), "start"],
            env=self._env(),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise RuntimeError(f"taskmanager.sh failed: {done.stdout[-800:]}{done.stderr[-800:]}")

    def checkpoints(self, job_id: str) -> dict:
        """The REST API's checkpoint counts of a job (``completed``, ``restored``, ...)."""
        url = f"http://{self.rest}/jobs/{job_id}/checkpoints"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)["counts"]

    def overview(self) -> dict:
        with urllib.request.urlopen(f"http://{self.rest}/overview", timeout=2) as response:
            return json.load(response)

    def jobs(self) -> list[dict]:
        """``[{"id": ..., "status": ...}]`` from the REST API's ``/jobs``."""
        with urllib.request.urlopen(f"http://{self.rest}/jobs", timeout=5) as response:
            return json.load(response)["jobs"]

    def cancel(self, job_id: str) -> None:
        request = urllib.request.Request(
            f"http://{self.rest}/jobs/{job_id}?mode=cancel", method="PATCH"
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if self.overview().get("slots-total", 0) >= 2:
                    return
            except OSError:
                pass
            pids = self.pids()
            if pids and not all(_alive(pid) for pid in pids):
                break
            time.sleep(0.3)
        logs = sorted((self.home / "log").glob("*.out"))
        tail = logs[-1].read_text(errors="replace")[-1500:] if logs else "(no log)"
        raise RuntimeError(f"Flink cluster at {self.rest} not ready: {tail}")

    def stop(self) -> None:
        """Stop the JobManager and TaskManager by their PIDs."""
        for pid in self.pids():
            if _alive(pid):
                _stop_pid(pid)
        for path in (self.home / "pid").glob("flink-microtarget-*.pid"):
            path.unlink()

    def __enter__(self) -> FlinkCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def ensure_embedded(directory: str | Path) -> str:
    """REST address of the cluster kept in ``directory``, starting it if needed."""
    directory = Path(directory).resolve()
    state = directory / "rest.port"
    if state.exists():
        cluster = FlinkCluster(directory, int(state.read_text()))
        if cluster.pids() and all(_alive(pid) for pid in cluster.pids()):
            cluster._wait_ready()
            return cluster.rest
        cluster.stop()
    cluster = FlinkCluster(directory).start()
    state.write_text(str(cluster.ports["rest"]))
    return cluster.rest


def stop_embedded(directory: str | Path) -> bool:
    """Stop the cluster kept in ``directory``; False if it was not running."""
    directory = Path(directory).resolve()
    state = directory / "rest.port"
    if not state.exists():
        return False
    cluster = FlinkCluster(directory, int(state.read_text()))
    running = any(_alive(pid) for pid in cluster.pids())
    cluster.stop()
    state.unlink()
    return running
