"""microtarget: real-time micro-targeted personalization on Apache Beam.

This file installs the project locally (``pip install -e .``) and is also what
``--setup_file ./setup.py`` ships to remote Beam workers (Flink, Dataflow).
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
REQUIREMENTS = [
    line.strip()
    for line in (HERE / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

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
    entry_points={"console_scripts": ["microtarget=runners.cli:main"]},
)
