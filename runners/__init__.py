"""Entry points: the CLI, batch replay, and local servers."""

from pathlib import Path

import pipelines  # noqa: F401  (drops Beam's import-time notices before Beam is imported)

DEFAULT_HOME = Path(".microtarget")  # embedded Redis data and default dead letters
