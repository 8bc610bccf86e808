"""Java programs the project runs next to Python: the Kafka broker, Beam's Flink job server.

Each lives in ``runners/local/jvm/NAME/pom.xml``, a pom with dependencies and
nothing to build; ``fetch(NAME)`` copies its jars into ``build/jvm/NAME/lib``
with ``mvn dependency:copy-dependencies`` (Maven's local repository caches
them, so a second fetch on the same machine is quick; a fetch after the pom
changed starts over). Nothing is downloaded while a job runs: what is not
fetched raises ``MissingJars`` naming the command that fetches it.

``python -m runners.local.jvm fetch`` is what ``make jvm-deps`` runs: both, and the
standalone Flink distribution (``runners.local.flink_cluster``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
POMS = Path(__file__).resolve().parent / "jvm"
BUILD = Path(os.environ.get("MICROTARGET_JVM_HOME", ROOT / "build" / "jvm"))
NAMES = ("kafka", "flink")

# What Flink 1.19 and Kafka reach into by reflection and Java 17 closes by default.
JAVA_OPENS = [
    f"--add-opens={module}=ALL-UNNAMED"
    for module in (
        "java.base/java.io",
        "java.base/java.lang",
        "java.base/java.lang.invoke",
        "java.base/java.lang.reflect",
        "java.base/java.math",
        "java.base/java.net",
        "java.base/java.nio",
        "java.base/java.text",
        "java.base/java.time",
        "java.base/java.util",
        "java.base/java.util.concurrent",
        "java.base/java.util.concurrent.atomic",
        "java.base/sun.nio.ch",
        "java.sql/java.sql",
    )
]


class MissingJars(RuntimeError):
    """A Java program whose jars are not fetched yet."""


def _pom(name: str) -> Path:
    if name not in NAMES:
        raise ValueError(f"unknown Java program {name!r} (one of {', '.join(NAMES)})")
    return POMS / name / "pom.xml"


def _digest(name: str) -> str:
    return hashlib.sha256(_pom(name).read_bytes()).hexdigest()[:16]


def lib_dir(name: str) -> Path:
    """The folder of ``name``'s jars (it may not be fetched yet)."""
    return BUILD / name / "lib"


def fetched(name: str) -> bool:
    """True if ``name``'s jars are there and were fetched for the pom as it is now."""
    stamp = lib_dir(name) / ".fetched"
    return stamp.exists() and stamp.read_text().strip() == _digest(name)


def fetch(name: str, quiet: bool = True) -> Path:
    """Copy ``name``'s jars into its lib folder, unless they are there already."""
    lib = lib_dir(name)
    if fetched(name):
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingJars("Maven (mvn) is not installed; it fetches the Java programs' jars")
    if lib.exists():
        shutil.rmtree(lib)
    command = [
        mvn,
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(_pom(name)),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={lib}",
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise MissingJars(f"mvn could not fetch the jars of {name}:\n{done.stdout[-3000:]}")
    (lib / ".fetched").write_text(_digest(name) + "\n")
    return lib


def classpath(name: str) -> str:
    """The classpath of ``name``'s jars; ``MissingJars`` if they are not fetched."""
    if not fetched(name):
        raise MissingJars(
            f"the jars of {name} are not fetched: run `make jvm-deps` "
            f"(or python -m runners.local.jvm fetch {name})"
        )
    return str(lib_dir(name) / "*")


def java() -> str:
    """The java executable ($JAVA_HOME/bin/java, else java on the PATH)."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise MissingJars("no java: install a JDK (17) or set JAVA_HOME")
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] != "fetch":
        print(
            "usage: python -m runners.local.jvm fetch [kafka] [flink] [flink-dist]", file=sys.stderr
        )
        return 2
    for name in argv[1:] or (*NAMES, "flink-dist"):
        try:
            if name == "flink-dist":
                from runners.local.flink_cluster import fetch_distribution

                print(f"{name}: {fetch_distribution()}")
                continue
            print(f"{name}: {fetch(name)}")
        except (MissingJars, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
