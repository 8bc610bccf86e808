"""``microtarget import``: convert a dataset or CSV files into an Avro event file.

::

    microtarget import {taobao,diginetica,otto,srgnn,csv} INPUT... --out FILE.avro
        [--map event_field=csv_column,...] [--event-type TYPE] [--time-format F]
        [--event-type-map src=dst,...] [--delimiter D] [--limit N]

The conversion itself is ``transforms.importers``; this module parses the
options, writes the events (``write_events``: Avro container plus a rejects
JSON lines file) and prints the report. Exit codes: 0 when the import ran
(rejected rows do not fail it: they are counted and written aside), 2 for a
configuration error (message on stderr as ``error: ...``, naming the field,
column or file, and the flags at fault), 1 when a file cannot be read or written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from transforms import importers
from transforms.importers import ImportConfigError, ImportReport

FORMATS = ("taobao", "diginetica", "otto", "srgnn", "csv")
_CSV_ONLY = ("map", "event_type", "time_format", "event_type_map", "delimiter")
# The flag of each importer keyword argument that an ImportConfigError may name.
_OPTION_FLAGS = {
    "mapping": "--map",
    "event_type": "--event-type",
    "time_format": "--time-format",
    "event_type_map": "--event-type-map",
    "delimiter": "--delimiter",
}


def _limit(text: str) -> int:
    """argparse type of --limit: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"--limit must be a whole number >= 0, got {text!r}")
    return value


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``import`` subcommand to an argparse subparsers object; returns its parser."""
    parser = subparsers.add_parser(
        "import",
        help="convert a dataset (taobao, diginetica, otto, srgnn) or CSV files into an Avro "
        "event file",
        description="Convert recorded clickstream files into an Avro file of events "
        "(schemas/event.avsc). Rows that cannot be converted are counted by reason and "
        "written to a rejects JSON lines file next to the output.",
    )
    parser.add_argument("format", choices=FORMATS, help="input format")
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="input files (globs allowed); for diginetica also the dataset folder; "
        "for srgnn the TRAIN then the TEST sessions file",
    )
    parser.add_argument("--out", required=True, metavar="FILE.avro", help="Avro file to write")
    parser.add_argument(
        "--rejects",
        default=None,
        metavar="FILE.jsonl",
        help="rejected rows as JSON lines (default: OUT with suffix .rejects.jsonl; "
        "always written, empty when nothing was rejected)",
    )
    parser.add_argument(
        "--map",
        action="append",
        default=None,
        metavar="FIELD=COLUMN,...",
        help="csv: event field = CSV column; needs timestamp, user_id or anonymous_id, and "
        "event_type unless --event-type is given (may be repeated)",
    )
    parser.add_argument(
        "--event-type",
        default=None,
        metavar="TYPE",
        help="csv: one event type for every row, for files of one kind of event with no "
        "event type column (instead of --map event_type=...; --event-type-map applies)",
    )
    parser.add_argument(
        "--time-format",
        default=None,
        metavar="F",
        help="csv: epoch_s, epoch_ms or a strptime format (default: epoch s/ms or ISO 8601)",
    )
    parser.add_argument(
        "--event-type-map",
        action="append",
        default=None,
        metavar="SRC=DST,...",
        help="csv: rename event types, e.g. view=product_view,buy=purchase (may be repeated)",
    )
    parser.add_argument(
        "--delimiter", default=None, metavar="D", help="csv: one character, or 'tab' (default ,)"
    )
    parser.add_argument(
        "--limit", type=_limit, default=None, metavar="N", help="read N rows at most"
    )
    parser.add_argument(
        "--keep-outside-window",
        action="store_true",
        help="taobao: keep rows outside the official 9-day window (skipped by default)",
    )
    parser.add_argument(
        "--raw-rejects",
        action="store_true",
        help="write rejected rows as they are (default: personal-looking values masked)",
    )
    parser.set_defaults(func=run)
    return parser


def parse_pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """``["a=b,c=d", "e=f"]`` -> ``{"a": "b", "c": "d", "e": "f"}``; naming a bad entry.

    >>> parse_pairs(["timestamp=ts, user_id=uid"], "--map")
    {'timestamp': 'ts', 'user_id': 'uid'}
    """
    pairs: dict[str, str] = {}
    for value in values or []:
        for entry in value.split(","):
            key, equals, target = (part.strip() for part in entry.partition("="))
            if not equals or not key or not target:
                raise ImportConfigError(f"{option} entry {entry.strip()!r} is not name=value")
            if key in pairs:
                raise ImportConfigError(f"{option} names {key!r} twice")
            pairs[key] = target
    return pairs


def _delimiter(text: str | None) -> str:
    """--delimiter as one character; ``tab`` and ``\\t`` mean a tab."""
    if text is None:
        return ","
    return {"tab": "\t", "\\t": "\t"}.get(text, text)


def start_import(args: argparse.Namespace) -> tuple[Iterator, ImportReport]:
    """The ``(items, report)`` of the import that ``args`` ask for; config errors raise."""
    mask = not args.raw_rejects
    if args.format != "csv":
        for name in _CSV_ONLY:
            if getattr(args, name) is not None:
                flag = "--" + name.replace("_", "-")
                raise ImportConfigError(f"{flag} applies to the csv format only")
    if args.keep_outside_window and args.format != "taobao":
        raise ImportConfigError("--keep-outside-window applies to the taobao format only")
    if args.format == "taobao":
        return importers.import_taobao(
            args.inputs,
            limit=args.limit,
            keep_outside_window=args.keep_outside_window,
            mask_rejects=mask,
        )
    if args.format == "diginetica":
        return importers.import_diginetica(args.inputs, limit=args.limit, mask_rejects=mask)
    if args.format == "otto":
        return importers.import_otto(args.inputs, limit=args.limit, mask_rejects=mask)
    if args.format == "srgnn":
        if len(args.inputs) != 2:
            raise ImportConfigError(
                f"srgnn takes two inputs, the TRAIN then the TEST sessions file; "
                f"got {len(args.inputs)}"
            )
        train, test = args.inputs
        return importers.import_srgnn(train, test, limit=args.limit, mask_rejects=mask)
    if not args.map:
        raise ImportConfigError(
            "csv needs --map event_field=csv_column,... (timestamp, user_id or anonymous_id, "
            "and event_type unless --event-type is given)"
        )
    return importers.import_csv(
        args.inputs,
        parse_pairs(args.map, "--map"),
        event_type=args.event_type,
        time_format=args.time_format,
        event_type_map=parse_pairs(args.event_type_map, "--event-type-map"),
        delimiter=_delimiter(args.delimiter),
        limit=args.limit,
        mask_rejects=mask,
    )


def config_error_message(exc: ImportConfigError) -> str:
    """The message of a config error, followed by the flags of the options it names.

    >>> config_error_message(ImportConfigError("no good", options=("mapping", "event_type")))
    'no good (--map, --event-type)'
    """
    flags = [_OPTION_FLAGS[option] for option in exc.options if option in _OPTION_FLAGS]
    return f"{exc} ({', '.join(flags)})" if flags else str(exc)


def _by_reason(counts: dict[str, int]) -> str:
    """``3 (a 1, b 2)``: a total and its reasons."""
    total = sum(counts.values())
    if not counts:
        return f"{total}"
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items()))
    return f"{total} ({reasons})"


def format_report(report: ImportReport, out: Path, rejects: Path) -> str:
    """The report as the lines ``microtarget import`` prints."""
    lines = [
        f"imported {report.dataset} from {len(report.sources)} file(s) into {out}",
        f"  rows read   {report.rows_read}",
        f"  written     {report.written}",
        f"  rejected    {_by_reason(report.rejected)}",
        f"  skipped     {_by_reason(report.skipped)}",
    ]
    lines.extend(f"  {name}: {value}" for name, value in sorted(report.info.items()))
    lines.extend(f"  note: {note}" for note in report.notes)
    lines.append(f"rejects: {rejects} ({sum(report.rejected.values())} rows)")
    if not report.reconciles():
        # Cannot happen unless an importer miscounts; say so rather than hide it.
        lines.append("warning: rows read != written + rejected + skipped")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Handler of ``microtarget import``: import, write, print the report; the exit code."""
    out = Path(args.out)
    rejects = Path(args.rejects) if args.rejects else importers.default_rejects_path(out)
    try:
        items, report = start_import(args)
        importers.write_events(items, out, rejects)
    except ImportConfigError as exc:
        print(f"error: {config_error_message(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_report(report, out, rejects))
    return 0
