"""Why namespaces are compared by content, not by DUMP bytes (``tests.redis_state``)."""

from __future__ import annotations

from tests.redis_state import namespace_state


def test_dump_is_not_canonical_but_the_state_is(redis_client, namespace):
    changed = 0
    for n in range(5, 40):
        key = f"mt:{namespace}:h{n}"
        redis_client.hset(key, mapping={f"f{i}": "x" * (70 if i == 0 else i) for i in range(n)})
        dump, state = redis_client.dump(key), namespace_state(redis_client, namespace)
        for i in range(3):
            redis_client.hget(key, f"f{i}")  # a read moves an unfinished rehash on
        changed += redis_client.dump(key) != dump
        assert namespace_state(redis_client, namespace) == state
    assert changed > 0
