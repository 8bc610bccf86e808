"""The pseudonym key: where it comes from, and the refusal to run without one.

The key turns user ids, anonymous ids, e-mail addresses and phone numbers
into HMAC-SHA256 pseudonyms (``models.privacy``). It is read from a key file
(``--pseudonym-key-file``) or from the environment variable
``MICROTARGET_PSEUDONYM_KEY``; with neither the job refuses to start, unless
``--insecure-dev-key`` asks for the fixed, public development key (for demos
and tests: anyone can recompute its pseudonyms, so they protect nothing).

What a pipeline carries is the key's source, not the key: each worker reads
the key again in ``setup``, so the key is never pickled into the job graph
that a runner ships and shows (its environment or mounted file must be there).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

ENV = "MICROTARGET_PSEUDONYM_KEY"
DEV_KEY = b"microtarget insecure development key: do not use in production"
MIN_BYTES = 16

log = logging.getLogger(__name__)


class PseudonymKeyError(ValueError):
    """No usable pseudonym key; the message says how to give one."""


@dataclass(frozen=True)
class KeySource:
    """``kind`` is ``file`` (``where`` is the path), ``env`` (the variable) or ``dev``."""

    kind: str
    where: str | None = None

    def load(self) -> bytes:
        """The key bytes; PseudonymKeyError if the source is gone or too short."""
        if self.kind == "dev":
            return DEV_KEY
        if self.kind == "file":
            try:
                with open(self.where, "rb") as handle:
                    key = handle.read().strip()
            except OSError as exc:
                raise PseudonymKeyError(
                    f"--pseudonym-key-file: cannot read {self.where}: {exc.strerror}"
                ) from None
            what = f"the key file {self.where}"
        else:
            key = os.environ.get(self.where, "").strip().encode("utf-8")
            what = f"${self.where}"
        if len(key) < MIN_BYTES:
            raise PseudonymKeyError(
                f"{what} holds {len(key)} bytes; a pseudonym key needs {MIN_BYTES}+"
            )
        return key

    def describe(self) -> str:
        """Where the key comes from, for logs (never the key)."""
        if self.kind == "dev":
            return "the INSECURE development key (--insecure-dev-key)"
        if self.kind == "file":
            return f"the key file {self.where}"
        return f"${self.where}"


def resolve(key_file: str | None, insecure_dev_key: bool) -> KeySource:
    """The key source the options ask for, checked now; PseudonymKeyError says what to do.

    A key file wins over the environment, and either over ``--insecure-dev-key``.
    """
    if key_file:
        source = KeySource("file", key_file)
    elif os.environ.get(ENV):
        source = KeySource("env", ENV)
    elif insecure_dev_key:
        source = KeySource("dev")
    else:
        raise PseudonymKeyError(
            "no pseudonym key: set $MICROTARGET_PSEUDONYM_KEY or pass "
            "--pseudonym-key-file FILE (16+ bytes, e.g. `openssl rand -hex 32 > key`); "
            "--insecure-dev-key runs with a public development key, for demos and tests only"
        )
    source.load()
    if source.kind == "dev":
        log.warning(
            "pseudonyms use the public development key: anyone can recompute them. "
            "Set $%s or --pseudonym-key-file in production.",
            ENV,
        )
    return source
