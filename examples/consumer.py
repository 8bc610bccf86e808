"""A shop service reading microtarget's Redis output, with nothing but redis-py.

    python examples/consumer.py --redis redis://localhost:6379/0 --namespace default \\
        --user PSEUDONYM --group mailer --count 10 --idle 5

It reads one user's profile, segments and scores, then follows the trigger
stream as a member of a consumer group and acknowledges each trigger once it
has printed it: at least once, so a consumer that stops before its XACK gets
its pending triggers again when it starts under the same name. It stops after
``--count`` triggers or ``--idle`` seconds without one. ``--user-id ID`` instead
of ``--user`` computes the pseudonym with ``$MICROTARGET_PSEUDONYM_KEY``.
``--json`` prints one JSON object a line (``profile``, ``snapshot``,
``segments``, ``scores``, each ``trigger``, then ``done``) for other programs.

The key layout it relies on (``NS`` the namespace, ``USER`` the pseudonym:
lowercase hex HMAC-SHA256 of the user id under the job's pseudonym key):

    mt:NS:profile:USER    hash: flat hot fields, ``snapshot`` (the profile as JSON)
    mt:NS:segments:USER   set: the user's rule segments
    mt:NS:segment:NAME    sorted set: members, score = joined at (ms)
    mt:NS:scores:USER     hash: MODEL, MODEL:version, MODEL:at per model
    mt:NS:topic:triggers  stream: ``trigger_id``, ``pattern``, ``user``, ``trigger`` (JSON)
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import time

import redis


def pseudonym(user_id: str, key: str) -> str:
    """The name the job stores a user under."""
    return hmac.new(key.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def read_user(client: redis.Redis, ns: str, user: str) -> dict:
    """The user's profile (hot fields and snapshot), segments (joined at) and scores."""
    profile = client.hgetall(f"mt:{ns}:profile:{user}")
    snapshot = json.loads(profile.pop("snapshot", "null"))
    names = sorted(client.smembers(f"mt:{ns}:segments:{user}"))
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.zscore(f"mt:{ns}:segment:{name}", user)
    joined = {name: None if at is None else int(at) for name, at in zip(names, pipe.execute())}
    scores: dict = {}
    for field, value in client.hgetall(f"mt:{ns}:scores:{user}").items():
        model, _, part = field.partition(":")
        scores.setdefault(model, {})[part or "score"] = value
    return {"profile": profile, "snapshot": snapshot, "segments": joined, "scores": scores}


def join_group(client: redis.Redis, stream: str, group: str, start: str) -> None:
    """Create the group (and the stream, if missing); a group that exists is kept."""
    try:
        client.xgroup_create(stream, group, id=start, mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def follow(client, stream, group, consumer, count, idle, show) -> int:
    """Read, show and acknowledge triggers until ``count`` (0: no limit) or ``idle`` s."""
    done, cursor = 0, "0"  # "0": this consumer's pending entries first, then new ones
    deadline = time.monotonic() + idle
    while count == 0 or done < count:
        wait_ms = int((deadline - time.monotonic()) * 1000)
        if wait_ms <= 0:
            break
        batch = 100 if count == 0 else min(100, count - done)
        reply = client.xreadgroup(group, consumer, {stream: cursor}, count=batch, block=wait_ms)
        entries = reply[0][1] if reply else []
        if cursor == "0" and not entries:
            cursor = ">"  # nothing left pending: read what no one in the group has had
            continue
        for entry_id, fields in entries:
            if fields:  # empty: deleted since it was delivered (an erasure), nothing to act on
                trigger = json.loads(fields["trigger"])
                show("trigger", {"entry": entry_id, **fields, "trigger": trigger})
        if entries:
            # Acknowledged once handled: a crash before this line gets them again (at least once).
            client.xack(stream, group, *(entry_id for entry_id, _ in entries))
            done += len(entries)
            deadline = time.monotonic() + idle
    return done


def printer(as_json: bool):
    """A function (kind, value) -> None that prints one item, as text or as a JSON line."""

    def show(kind: str, value) -> None:
        if as_json:
            print(json.dumps({kind: value}, sort_keys=True))
        elif kind == "trigger":
            t = value["trigger"]
            print(f"trigger {t['pattern']} user={t['user_id'][:16]} at={t['event_time']}")
        elif isinstance(value, dict):
            print(kind)
            for name, item in sorted(value.items()):
                text = str(item)  # cut long values short: --json has them whole
                print(f"  {name}: {text if len(text) <= 90 else text[:87] + '...'}")
        else:
            print(f"{kind}: {value}")
        sys.stdout.flush()

    return show


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default="redis://localhost:6379/0", help="Redis URL")
    parser.add_argument("--namespace", default="default", help="the job's --namespace")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="the user's pseudonym, as stored")
    who.add_argument(
        "--user-id", help="the raw user id; pseudonymized with $MICROTARGET_PSEUDONYM_KEY"
    )
    parser.add_argument("--group", default="consumer-example", help="consumer group name")
    parser.add_argument("--consumer", default="worker-1", help="this consumer in the group")
    parser.add_argument(
        "--start",
        choices=["oldest", "newest"],
        default="oldest",
        help="where a new group starts on the stream (an existing group keeps its place)",
    )
    parser.add_argument("--count", type=int, default=0, help="stop after N triggers (0: none)")
    parser.add_argument("--idle", type=float, default=5.0, help="stop after S idle seconds")
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    user = args.user
    if user is None:
        key = os.environ.get("MICROTARGET_PSEUDONYM_KEY")
        if not key:
            print("--user-id needs MICROTARGET_PSEUDONYM_KEY", file=sys.stderr)
            return 2
        user = pseudonym(args.user_id, key)
    client = redis.Redis.from_url(args.redis, decode_responses=True)
    show = printer(args.json)
    found = read_user(client, args.namespace, user)
    if not found["profile"]:
        print(f"no profile for user {user} in namespace {args.namespace}", file=sys.stderr)
    for kind in ("profile", "snapshot", "segments", "scores"):
        show(kind, found[kind])
    stream = f"mt:{args.namespace}:topic:triggers"
    join_group(client, stream, args.group, "0" if args.start == "oldest" else "$")
    read = follow(client, stream, args.group, args.consumer, args.count, args.idle, show)
    show("done", {"read": read, "stream": stream, "group": args.group})
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
