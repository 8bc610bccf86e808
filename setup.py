"""microtarget: real-time micro-targeted personalization on Apache Beam.

This file installs the project locally (``pip install -e .``) and is also what
``--setup_file ./setup.py`` ships to remote Beam workers (Flink, Dataflow).
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _requirements(name: str) -> list[str]:
    path = HERE / name
    if not path.exists():  # a worker's copy of the sources may leave the extras' file out
        return []
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


REQUIREMENTS = _requirements("requirements.txt")

setup(
    name="microtarget",
    version="0.1.0",
    description="Real-time micro-targeted personalization pipeline on Apache Beam",
    python_requires=">=3.11",
    packages=find_packages(
        include=["pipelines*", "transforms*", "models*", "schemas*", "runners*"]
    ),
    package_data={"schemas": ["*.avsc"], "transforms": ["*.lua"], "pipelines": ["*.yaml"]},
    include_package_data=True,
    install_requires=REQUIREMENTS,
    # `microtarget report` (its statistics, plots and bias audit); workers never need them.
    extras_require={"report": _requirements("requirements-report.txt")},
    entry_points={"console_scripts": ["microtarget=runners.cli:main"]},
)
