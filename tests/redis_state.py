"""Everything a namespace holds in Redis, as plain comparable data."""

from __future__ import annotations


def namespace_state(client, namespace: str) -> dict:
    """``{key: (type, content)}`` for every key under ``mt:NAMESPACE:``."""
    state = {}
    for raw_key in client.scan_iter(match=f"mt:{namespace}:*", count=1000):
        key = raw_key.decode()
        kind = client.type(raw_key).decode()
        if kind == "hash":
            content = dict(sorted(client.hgetall(raw_key).items()))
        elif kind == "list":
            content = client.lrange(raw_key, 0, -1)
        elif kind == "zset":
            content = client.zrange(raw_key, 0, -1, withscores=True)
        elif kind == "set":
            content = sorted(client.smembers(raw_key))
        elif kind == "stream":
            content = [fields for _, fields in client.xrange(raw_key)]
        else:
            content = client.get(raw_key)
        state[key] = (kind, content)
    return dict(sorted(state.items()))


def namespace_dumps(client, namespace: str, rename_to: str | None = None) -> dict:
    """``{key: DUMP bytes}`` for every key under ``mt:NAMESPACE:`` (keys renamed if asked)."""
    dumps = {}
    for raw_key in client.scan_iter(match=f"mt:{namespace}:*", count=1000):
        key = raw_key.decode()
        if rename_to is not None:
            key = f"mt:{rename_to}:" + key.removeprefix(f"mt:{namespace}:")
        dumps[key] = client.dump(raw_key)
    return dict(sorted(dumps.items()))
