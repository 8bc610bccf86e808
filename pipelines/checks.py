"""Checks before a run starts: the inputs match files, Redis answers.

A run that cannot start fails at once with ``InputError``, whose message names
the flag and what is wrong, rather than in a worker after the graph is built.
"""

from __future__ import annotations

from apache_beam.io.filesystems import FileSystems


class InputError(ValueError):
    """Inputs or endpoints a replay cannot start with (the message names which)."""


def check_redis(url: str) -> None:
    """Fail before the pipeline starts if Redis cannot be reached at ``url``."""
    import redis

    from transforms.redis_sink import redact_url

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    except ValueError:
        # The parser's message may quote a piece of the password: say only what is wrong.
        raise InputError(
            f"--redis {redact_url(url)} is not a valid redis:// or rediss:// URL "
            "(percent-encode / ? # @ in the user and password)"
        ) from None
    try:
        client.ping()
        client.close()
    except redis.exceptions.RedisError as exc:
        raise InputError(f"cannot reach Redis at --redis {redact_url(url)}: {exc}") from None


def check_inputs(patterns: list[str]) -> None:
    """Fail before the pipeline starts if a pattern matches no file."""
    for pattern in patterns:
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception as exc:  # Beam raises BeamIOError, a bare Exception subclass
            raise InputError(f"cannot read input {pattern!r}: {exc}") from exc
        if not matched:
            raise InputError(f"no file matches input {pattern!r}")
