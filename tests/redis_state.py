"""Everything a namespace holds in Redis, as plain comparable data.

Comparisons use the content of each key, every value as the bytes Redis
holds, not ``DUMP``: a hash with a value over 64 bytes (every profile) is a
hash table whose ``DUMP`` lists fields in the table's iteration order, and a
mere ``HGET`` can move the table's incremental rehash on and change that
order (``test_dump_is_not_canonical_but_the_state_is``).
"""

from __future__ import annotations


def _content(client, raw_key: bytes, kind: str):
    if kind == "hash":
        return dict(sorted(client.hgetall(raw_key).items()))
    if kind == "list":
        return client.lrange(raw_key, 0, -1)
    if kind == "zset":
        return client.zrange(raw_key, 0, -1, withscores=True)
    if kind == "set":
        return sorted(client.smembers(raw_key))
    if kind == "stream":
        return [fields for _, fields in client.xrange(raw_key)]
    return client.get(raw_key)


def namespace_state(client, namespace: str, rename_to: str | None = None) -> dict:
    """``{key: (type, content)}`` for every key under ``mt:NAMESPACE:`` (keys renamed if asked).

    A stream's content is its entries' fields in order, without their ids
    (which are wall-clock).
    """
    state = {}
    for raw_key in client.scan_iter(match=f"mt:{namespace}:*", count=1000):
        key = raw_key.decode()
        if rename_to is not None:
            key = f"mt:{rename_to}:" + key.removeprefix(f"mt:{namespace}:")
        kind = client.type(raw_key).decode()
        state[key] = (kind, _content(client, raw_key, kind))
    return dict(sorted(state.items()))


def streams_by_user(state: dict) -> dict:
    """``state`` with each stream's entries grouped by their ``user`` field, in order.

    A topic's entries of one user keep their order on every runner; how the
    users interleave depends on how a runner bundles and fires them.
    """
    out = {}
    for key, (kind, content) in state.items():
        if kind == "stream":
            users: dict = {}
            for fields in content:
                users.setdefault(fields.get(b"user"), []).append(sorted(fields.items()))
            content = dict(sorted(users.items(), key=lambda kv: kv[0] or b""))
        out[key] = (kind, content)
    return out
