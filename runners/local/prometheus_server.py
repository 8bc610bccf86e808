"""A real Prometheus server on 127.0.0.1 that scrapes given targets (tests, local checks).

The binary is Debian's ``prometheus`` package (``make system-deps`` installs it,
with ``promtool``); ``MICROTARGET_PROMETHEUS`` overrides it. ``PrometheusServer``
writes a configuration that scrapes each target every ``interval`` seconds as
job ``microtarget`` with the alert rules of ``ops/prometheus``, starts the
server on a free port with its data in a folder of its own, and stops it by its
PID. ``query`` runs an instant PromQL query through the HTTP API.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from runners.local.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "alerts.yml"
START_TIMEOUT_S = 30.0


def binary(name: str = "prometheus") -> str:
    override = os.environ.get("MICROTARGET_PROMETHEUS") if name == "prometheus" else None
    found = override or shutil.which(name)
    if not found:
        raise RuntimeError(f"no {name}: `make system-deps` installs Debian's prometheus package")
    return found


class PrometheusServer:
    """``with PrometheusServer(folder, ["127.0.0.1:9464"]) as prom: prom.query("up")``."""

    def __init__(self, folder: str | Path, targets: list[str], interval_s: float = 1.0):
        self.folder = Path(folder)
        self.targets = list(targets)
        self.interval_s = interval_s
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        every = f"{int(self.interval_s * 1000)}ms"
        config = {
            "global": {"scrape_interval": every, "evaluation_interval": every},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "microtarget", "static_configs": [{"targets": self.targets}]}
            ],
        }
        path = self.folder / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        log = open(self.folder / "prometheus.log", "ab")  # noqa: SIM115 (the child's)
        self.process = subprocess.Popen(
            [
                binary(),
                f"--config.file={path}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {self.process.returncode}: {self._tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prometheus not ready after {START_TIMEOUT_S} s: {self._tail()}")

    def _tail(self) -> str:
        try:
            return (self.folder / "prometheus.log").read_text(errors="replace")[-1500:]
        except OSError:
            return "(no log)"

    def query(self, promql: str) -> dict:
        """The API's answer to an instant query (``status``, ``data``; ``error`` on failure)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as exc:  # 400 for a query that does not parse
            return json.load(exc)

    def values(self, promql: str) -> list[tuple[dict, float]]:
        """An instant vector's samples as (labels, value)."""
        answer = self.query(promql)
        if answer.get("status") != "success":
            raise RuntimeError(f"{promql}: {answer.get('error')}")
        return [(s["metric"], float(s["value"][1])) for s in answer["data"]["result"]]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
