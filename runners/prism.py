"""Prism, Beam's own portable local runner, built here once and run from ``build/prism``.

Beam's ``PrismRunner`` downloads a Prism binary from the project's releases when
it is given none; nothing here downloads while a job runs, so replays always
pass ``--prism_location``. ``build()`` (what ``make prism`` and ``make setup``
run when Go is present) compiles the Go module of the same Beam version as the
Python SDK into ``build/prism/prism``; Go's module cache makes a second build
quick, and a binary already built for this version is kept.

``options()`` are the Beam flags of a replay on Prism:

* ``--environment_type=LOOPBACK``: the SDK worker runs inside the replay's
  process, so this project's worker changes (``runners.beam_patches``) apply
  to it as they do on the FnApiRunner;
* ``--experiments=prism_disable_sdf_split``: Prism splits a bundle that makes
  no progress for a while, also a bundle of timers, which it is not meant to
  do (apache/beam#35771, open in 2.77: "Prism not handling on_timer callbacks
  correctly when split happens"). Such a split drops the watermark holds of
  the timers it moves, so the watermark can pass timers still pending: the
  user timeline then released sessions before their events (some 2.3 times
  the sessions, profiles and learners off) and crashed on a summary it could
  not place. Turning splitting off is Prism's own switch (the name says SDF,
  it gates every split), and only a replay on Prism gets it.
* ``--job_server_timeout``: a week (see ``options``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import apache_beam

ROOT = Path(__file__).resolve().parents[1]
HOME = Path(os.environ.get("MICROTARGET_PRISM_HOME", ROOT / "build" / "prism"))
BINARY = HOME / "prism"
MODULE = "github.com/apache/beam/sdks/v2/go/cmd/prism"
# Prism of the Python SDK's own version: the runner and the SDK speak the same protocol.
VERSION = "v" + apache_beam.__version__
BUILD_TIMEOUT_S = 1800
JOB_TIMEOUT_S = 7 * 24 * 3600


class MissingPrism(RuntimeError):
    """Prism is not built (the message says how to build it)."""


def _stamp() -> Path:
    return HOME / ".version"


def built() -> bool:
    """True if the binary is there and was built for this Beam version."""
    stamp = _stamp()
    return BINARY.exists() and stamp.exists() and stamp.read_text().strip() == VERSION


def build(quiet: bool = True) -> Path:
    """Compile Prism into ``build/prism`` unless it is there for this Beam version."""
    if built():
        return BINARY
    go = shutil.which("go")
    if go is None:
        raise MissingPrism("Prism needs the Go toolchain to build (`go` is not on PATH)")
    HOME.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GOBIN": str(HOME),
        # The checksum database is not always reachable; the module proxy is enough here.
        "GOSUMDB": os.environ.get("GOSUMDB", "off"),
    }
    done = subprocess.run(
        [go, "install", f"{MODULE}@{VERSION}"],
        env=env,
        capture_output=quiet,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    if done.returncode != 0:
        tail = (done.stderr or "")[-1500:] if quiet else ""
        raise MissingPrism(f"`go install {MODULE}@{VERSION}` failed: {tail}")
    _stamp().write_text(VERSION + "\n")
    return BINARY


def location() -> Path:
    """The Prism binary to run, or ``MissingPrism`` naming how to build it."""
    if not BINARY.exists():
        raise MissingPrism(
            f"Prism is not built at {BINARY}: run `make prism` (needs Go), or use --runner fnapi"
        )
    return BINARY


def options(prism_location: str | Path | None = None) -> list[str]:
    """The Beam flags of a replay on Prism (see the module docstring)."""
    return [
        "--runner=PrismRunner",
        f"--prism_location={prism_location or location()}",
        "--environment_type=LOOPBACK",
        "--experiments=prism_disable_sdf_split",
        # Beam's portable runner reads the job's state and messages through calls with this
        # deadline (300 s by default), so a longer replay failed with DEADLINE_EXCEEDED.
        f"--job_server_timeout={JOB_TIMEOUT_S}",
    ]


def main() -> int:
    """``python -m runners.prism``: build Prism if Go is there; say so if it is not."""
    if shutil.which("go") is None:
        print("Go is not installed: Prism is not built (replays run on the FnApiRunner)")
        return 0
    print(f"Prism {VERSION}: {build(quiet=False)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
