"""Entry points: the CLI, batch replay, and local servers."""

from pathlib import Path

DEFAULT_HOME = Path(".microtarget")  # embedded Redis data and default dead letters
