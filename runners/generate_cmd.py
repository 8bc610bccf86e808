"""``microtarget generate``: write a synthetic clickstream from known personas.

::

    microtarget generate --events N --users U --seed S --out FILE.avro [--start-ms MS]

The events come from ``models.personas.generate`` (same arguments, same
records) and go to an Avro container file (``schemas/event.avsc``). The
ground truth goes next to it, to ``FILE.personas.json``::

    {"seed": S, "events": N, "users": U, "duplicates": D,
     "personas": {user_id: persona}, "counts": {persona: users}}

Both files are written under a temporary name and renamed at the end, so a
failed run leaves no half-written output. Exit codes: 0 when written, 2 for a
bad argument (``error: ...`` on stderr, naming it), 1 when a file cannot be
written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

from models import personas
from schemas.codecs import write_container


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``generate`` subcommand to an argparse subparsers object; returns its parser."""
    parser = subparsers.add_parser(
        "generate",
        help="write a synthetic clickstream from known personas (Avro) and its ground truth",
        description="Write a seeded synthetic clickstream to an Avro event file, and which "
        "persona each user follows to OUT.personas.json. "
        f"Personas: {', '.join(personas.PERSONAS)}.",
    )
    parser.add_argument(
        "--events", type=int, required=True, metavar="N", help="records, retries included"
    )
    parser.add_argument(
        "--users", type=int, required=True, metavar="U", help="distinct users (<= N)"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="default: %(default)s")
    parser.add_argument("--out", required=True, metavar="FILE.avro", help="Avro file to write")
    parser.add_argument(
        "--start-ms",
        type=int,
        default=personas.DEFAULT_START_MS,
        metavar="MS",
        help="epoch ms (UTC) the first sessions start from (default: %(default)s, 2024-01-01)",
    )
    parser.set_defaults(func=handler)
    return parser


def personas_path(out: str | os.PathLike) -> Path:
    """Where the ground truth of ``out`` goes: ``FILE.avro`` -> ``FILE.personas.json``.

    >>> str(personas_path("build/demo/events.avro"))
    'build/demo/events.personas.json'
    """
    return Path(out).with_suffix(".personas.json")


def ground_truth(args: argparse.Namespace, records: list[dict], truth: dict[str, str]) -> dict:
    """The ``personas.json`` document of one run."""
    unique = len({record["event_id"] for record in records})
    return {
        "seed": args.seed,
        "events": len(records),
        "users": len(truth),
        "duplicates": len(records) - unique,
        "personas": truth,
        "counts": personas.persona_counts(truth),
    }


def _write(out: Path, truth_path: Path, records: list[dict], document: dict) -> None:
    """Write both files under temporary names, then rename them into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_truth = truth_path.with_name(truth_path.name + ".tmp")
    try:
        # A sync marker drawn from the arguments makes the file itself reproducible.
        marker = hashlib.md5(json.dumps(document["seed"]).encode() + b"microtarget").digest()
        write_container(tmp_out, records, schema="event", sync_marker=marker)
        tmp_truth.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp_out, out)
        os.replace(tmp_truth, truth_path)
    except BaseException:
        for tmp in (tmp_out, tmp_truth):
            tmp.unlink(missing_ok=True)
        raise


def handler(args: argparse.Namespace) -> int:
    """Handler of ``microtarget generate``: generate, write, print what was written."""
    out = Path(args.out)
    truth_path = personas_path(out)
    try:
        records, truth = personas.generate(args.events, args.users, args.seed, args.start_ms)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    document = ground_truth(args, records, truth)
    try:
        _write(out, truth_path, records, document)
    except OSError as exc:
        print(f"error: cannot write {out} or {truth_path}: {exc}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{name} {n}" for name, n in document["counts"].items())
    print(
        f"wrote {document['events']} events ({document['duplicates']} retried duplicates) "
        f"of {document['users']} users, seed {args.seed}, to {out}"
    )
    print(f"personas: {truth_path} ({counts})")
    return 0
