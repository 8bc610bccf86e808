"""Convert recorded clickstream datasets and generic CSV files into event dicts.

Each ``import_*`` function checks its options and the input files' headers at
once (raising ``ImportConfigError`` that names the field, column or file), then
returns ``(items, report)``. ``items`` is a lazy iterator of ``(EVENT, event)``
and ``(REJECT, reject)`` pairs in input order: files are streamed row by row,
so an import never holds a whole file. ``report`` (an ``ImportReport``) is
filled in as ``items`` is consumed; read it once the iterator is exhausted.
``write_events`` writes the events to an Avro container and the rejects to a
JSON lines file; ``events_only`` keeps just the events.

Events are shaped like ``schemas/event.avsc`` (every field present, ``None``
where unknown, ``timestamp`` in epoch milliseconds UTC) and pass
``models.validation.validate_event``, so the pipeline's ``DecodeEvents``
accepts every one of them.

Event ids are deterministic: the first ``ID_HEX_CHARS`` hex digits of the
SHA-1 of (dataset name, source file basename, raw row text without its line
end). Importing the same file twice gives the same ids, whatever folder it
is in. Identical duplicate rows in a source therefore get the same id; that
is intended: the pipeline's ``DeduplicateEvents`` drops the copies, just as
it drops retried deliveries.

A row is never dropped silently. Every row read ends in exactly one of
``written``, ``rejected[reason]`` or ``skipped[reason]``, so
``ImportReport.reconciles()`` holds. Skips are rows that are not events by
design (``header``, ``blank_line``, Taobao's ``outside_window``, Diginetica's
``session_not_in_views``). Rejects are rows that cannot be converted; each is
yielded as ``{"source", "line", "reason", "detail", "row"}`` where ``detail``
names the column and ``row`` is the row text, masked like dead-letter excerpts
(``models.dead_letters.mask_excerpt``) unless ``mask_rejects=False``, at most
``REJECT_ROW_CHARS`` characters. Reasons: ``wrong_column_count``,
``missing_user``, ``missing_field``, ``wrong_type``, ``bad_timestamp``,
``unknown_event_type``, ``malformed_csv``, ``bad_encoding``, ``bad_json``, and
the reasons of ``validate_event`` (e.g. ``timestamp_out_of_range``).

``limit`` caps the rows read (header lines count as rows, as in
``rows_read``); for Diginetica it caps the rows of the views files.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import functools
import glob
import hashlib
import itertools
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any, NamedTuple

from models import events as ev
from models.dead_letters import mask_excerpt
from models.validation import FIELDS, MIN_TIMESTAMP_MS, validate_event
from schemas.codecs import write_container

EVENT = "event"
REJECT = "reject"
ID_HEX_CHARS = 20
REJECT_ROW_CHARS = 200

Item = tuple[str, dict]
PathsLike = str | os.PathLike | Iterable[str | os.PathLike]

_BLANK_EVENT = {name: None for name, _, _ in FIELDS}
_FIELD_KINDS = {name: kind for name, kind, _ in FIELDS}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
# Below 1e11 a number is read as seconds (1e11 s is the year 5138; 1e11 ms is 1973).
_SECONDS_BELOW = 100_000_000_000
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_WHOLE = re.compile(r"[+-]?\d+(?:\.0*)?")
_VALIDATION_FIELD = re.compile(r"field '(\w+)'")


class ImportConfigError(ValueError):
    """Options or input files an import cannot work with; the message names the culprit.

    ``options`` names the ``import_*`` keyword arguments at fault (e.g.
    ``("mapping", "event_type")``), so that a command line can name its flags.
    """

    def __init__(self, message: str, options: tuple[str, ...] = ()):
        super().__init__(message)
        self.options = options


@dataclass
class ImportReport:
    """What an import did with every row it read.

    ``rejected`` and ``skipped`` count rows by reason; ``info`` holds facts that
    are not row outcomes (e.g. Diginetica sessions joined), ``notes`` short
    remarks (e.g. files in a folder that were ignored).
    """

    rows_read: int = 0
    written: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    dataset: str = ""
    sources: list[str] = field(default_factory=list)
    info: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def reconciles(self) -> bool:
        """True iff every row read was written, rejected or skipped, exactly once.

        >>> ImportReport(rows_read=4, written=2, rejected={"bad_json": 1},
        ...              skipped={"header": 1}).reconciles()
        True
        """
        return self.rows_read == (
            self.written + sum(self.rejected.values()) + sum(self.skipped.values())
        )

    def to_dict(self) -> dict:
        """The report as plain JSON-ready data, reason counts sorted by name."""
        data = asdict(self)
        for name in ("rejected", "skipped", "info"):
            data[name] = dict(sorted(data[name].items()))
        data["reconciles"] = self.reconciles()
        return data

    def _count(self, bucket: dict[str, int], reason: str) -> None:
        bucket[reason] = bucket.get(reason, 0) + 1


def make_event_id(dataset: str, source: str | os.PathLike, raw: str) -> str:
    """The deterministic id of the event made from one raw source row.

    Only the basename of ``source`` counts, so moving a file keeps its ids.

    >>> a = make_event_id("taobao", "/data/UserBehavior.csv", "1,2268318,2520377,pv,1511544070")
    >>> a == make_event_id("taobao", "UserBehavior.csv", "1,2268318,2520377,pv,1511544070")
    True
    >>> len(a)
    20
    """
    text = "\x1f".join((dataset, os.path.basename(os.fspath(source)), raw))
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:ID_HEX_CHARS]


def parse_time_ms(text: str, time_format: str | None = None) -> int:
    """Epoch milliseconds (UTC) of a time text; raises ValueError if it is not one.

    ``time_format`` is ``"epoch_s"``, ``"epoch_ms"``, a ``strptime`` format, or
    None: numbers below 1e11 are seconds, larger ones milliseconds, anything
    else ISO 8601. Times without a zone are taken as UTC; fractions of a
    millisecond are cut off.

    >>> parse_time_ms("1511544070"), parse_time_ms("1659304800025")
    (1511544070000, 1659304800025)
    >>> parse_time_ms("2017-11-24T17:21:10Z"), parse_time_ms("2017-11-25 01:21:10+08:00")
    (1511544070000, 1511544070000)
    >>> parse_time_ms("24/11/2017 17:21", "%d/%m/%Y %H:%M")
    1511544060000
    """
    if time_format in (None, "epoch_s", "epoch_ms"):
        if _NUMBER.fullmatch(text):
            value = Decimal(text)
            if time_format == "epoch_s" or (time_format is None and abs(value) < _SECONDS_BELOW):
                value *= 1000
            return int(value.to_integral_value(rounding=ROUND_FLOOR))
        if time_format is not None:
            raise ValueError(f"{time_format} needs a number")
        moment = datetime.fromisoformat(text)
    else:
        moment = datetime.strptime(text, time_format)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _ONE_MS


def events_only(items: Iterable[Item]) -> Iterator[dict]:
    """The events of an import's items, rejects left out (the report still counts them)."""
    return (record for kind, record in items if kind == EVENT)


def default_rejects_path(out_path: str | os.PathLike) -> Path:
    """Where ``write_events`` puts rejects: ``OUT`` with ``.rejects.jsonl`` for its suffix.

    >>> str(default_rejects_path("build/taobao.avro"))
    'build/taobao.rejects.jsonl'
    """
    return Path(out_path).with_suffix(".rejects.jsonl")


def write_events(
    items: Iterable[Item | dict],
    out_path: str | os.PathLike,
    rejects_path: str | os.PathLike | None = None,
) -> tuple[int, int]:
    """Write events to an Avro container and rejects to JSON lines; returns both counts.

    ``items`` are an import's ``(kind, record)`` pairs (plain event dicts are
    taken as events). The rejects file (default ``default_rejects_path``) is
    always written, empty when nothing was rejected, so a stale file from an
    earlier run never survives. Both files are written under a temporary name
    and renamed at the end: a failed import leaves no half-written output.
    """
    out = Path(out_path)
    rejects = Path(rejects_path) if rejects_path is not None else default_rejects_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rejects.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_rejects = rejects.with_name(rejects.name + ".tmp")
    rejected = 0
    try:
        with open(tmp_rejects, "w", encoding="utf-8") as reject_file:

            def events() -> Iterator[dict]:
                nonlocal rejected
                for item in items:
                    if isinstance(item, dict):
                        yield item
                        continue
                    kind, record = item
                    if kind == EVENT:
                        yield record
                    else:
                        reject_file.write(json.dumps(record, ensure_ascii=False) + "\n")
                        rejected += 1

            written = write_container(tmp_out, events(), schema="event")
        os.replace(tmp_out, out)
        os.replace(tmp_rejects, rejects)
    except BaseException:
        for leftover in (tmp_out, tmp_rejects):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        raise
    return written, rejected


# ------------------------------------------------------------------ reading rows


class _Reject(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _Skip(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Row(NamedTuple):
    """One source row: where it starts, its text, its parsed cells, or why it is unreadable."""

    source: str
    line: int
    raw: str
    cells: Any
    error: tuple[str, str] | None = None
    meta: Any = None


class _LineTap:
    """Feeds a binary file to ``csv.reader`` as text lines, keeping what each row used.

    ``csv.reader`` pulls exactly the lines a row needs, so the lines taken
    since the last row are that row's raw text (several for a quoted newline).
    """

    def __init__(self, stream):
        self._stream = stream
        self.lines: list[str] = []
        self.count = 0
        self.bad_encoding = False

    def __iter__(self):
        return self

    def __next__(self) -> str:
        data = next(self._stream)
        if self.count == 0 and data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8) :]
        self.count += 1
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("utf-8", "backslashreplace")
            self.bad_encoding = True
        self.lines.append(text)
        return text

    def take(self) -> tuple[str, bool]:
        """The raw text of the row just read (line end removed) and whether it was bad UTF-8."""
        raw = "".join(self.lines).rstrip("\r\n")
        bad = self.bad_encoding
        self.lines.clear()
        self.bad_encoding = False
        return raw, bad


def _read_csv(path: Path, delimiter: str, meta: Any = None) -> Iterator[_Row]:
    """The rows of a CSV file, unreadable ones (bad quoting, not UTF-8) marked with why."""
    with open(path, "rb") as stream:
        tap = _LineTap(stream)
        # strict: a stray quote is an error for that row, not a silently merged field.
        reader = csv.reader(tap, delimiter=delimiter, strict=True)
        while True:
            first = tap.count + 1
            try:
                cells, error = next(reader), None
            except StopIteration:
                return
            except csv.Error as exc:
                cells, error = None, ("malformed_csv", f"not valid CSV: {exc}")
            raw, bad_encoding = tap.take()
            if bad_encoding and error is None:
                cells, error = None, ("bad_encoding", "the row is not UTF-8 text")
            yield _Row(str(path), first, raw, cells, error, meta)


def _read_lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(line number, text without line end, was bad UTF-8) for each line of a file."""
    with open(path, "rb") as stream:
        for number, data in enumerate(stream, start=1):
            if number == 1 and data.startswith(codecs.BOM_UTF8):
                data = data[len(codecs.BOM_UTF8) :]
            try:
                yield number, data.decode("utf-8").rstrip("\r\n"), False
            except UnicodeDecodeError:
                yield number, data.decode("utf-8", "backslashreplace").rstrip("\r\n"), True


def _expand(paths: PathsLike, allow_dirs: bool = False) -> list[Path]:
    """Input paths, globs expanded (sorted); a missing input is a config error."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    found: list[Path] = []
    for given in paths:
        text = os.fspath(given)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise ImportConfigError(f"input {text!r} matches no file")
            found.extend(Path(match) for match in matches)
            continue
        path = Path(text)
        if not path.exists():
            raise ImportConfigError(f"input {text!r} does not exist")
        found.append(path)
    if not found:
        raise ImportConfigError("no input files given")
    for path in found:
        if path.is_dir() and not allow_dirs:
            raise ImportConfigError(f"input {str(path)!r} is a folder; name the files")
    return found


def _check_limit(limit: int | None) -> None:
    """Reject a limit that is not a whole number >= 0 (None means no limit)."""
    if limit is not None and (type(limit) is not int or limit < 0):
        raise ImportConfigError(f"limit must be a whole number >= 0, got {limit!r}")


def _excerpt(raw: str, mask: bool) -> str:
    """The row text of a reject: masked unless asked otherwise, at most REJECT_ROW_CHARS."""
    text = mask_excerpt(raw[: REJECT_ROW_CHARS * 4], REJECT_ROW_CHARS * 4) if mask else raw
    if len(text) > REJECT_ROW_CHARS:
        text = text[: REJECT_ROW_CHARS - 3] + "..."
    return text


def _convert_rows(
    report: ImportReport,
    rows: Iterable[_Row],
    convert: Callable[[_Row], dict],
    field_columns: dict[str, str],
    mask: bool,
) -> Iterator[Item]:
    """Convert, validate and count each row: the one loop every importer shares.

    ``field_columns`` names the source column of an event field, so that a
    validation failure (which names the field) also names the column.
    """
    for row in rows:
        report.rows_read += 1
        try:
            if row.error is not None:
                raise _Reject(*row.error)
            event, problem = validate_event(convert(row))
            if problem is not None:
                reason, detail = problem
                named = _VALIDATION_FIELD.search(detail)
                if named and named.group(1) in field_columns:
                    detail = f"{detail} (column {field_columns[named.group(1)]!r})"
                raise _Reject(reason, detail)
        except _Skip as skip:
            report._count(report.skipped, skip.reason)
            continue
        except _Reject as rejected:
            report._count(report.rejected, rejected.reason)
            yield (
                REJECT,
                {
                    "source": row.source,
                    "line": row.line,
                    "reason": rejected.reason,
                    "detail": rejected.detail,
                    "row": _excerpt(row.raw, mask),
                },
            )
            continue
        report.written += 1
        yield EVENT, event


def _is_digits(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` alone also accepts superscripts and the like)."""
    return text.isascii() and text.isdigit()


def _check_id(column: str, value: str) -> str:
    """A numeric id cell, or a reject naming its column."""
    if not value:
        raise _Reject("missing_field", f"column {column!r} is empty")
    if not _is_digits(value):
        raise _Reject("wrong_type", f"column {column!r} is not a whole number")
    return value


def _new_event(dataset: str, row: _Row, **values) -> dict:
    """An event with every schema field, its id derived from the row, ``values`` set."""
    event = dict(_BLANK_EVENT)
    event["event_id"] = make_event_id(dataset, row.source, row.raw)
    event.update(values)
    return event


# ------------------------------------------------------------------ Taobao

TAOBAO = "taobao"
TAOBAO_COLUMNS = ("user_id", "item_id", "category_id", "behavior_type", "timestamp")
TAOBAO_EVENT_TYPES = {
    "pv": ev.PRODUCT_VIEW,
    "cart": ev.ADD_TO_CART,
    "buy": ev.PURCHASE,
    "fav": ev.ADD_TO_WISHLIST,
}
# The official 9 days: 2017-11-25 to 2017-12-03 in China time (UTC+8), as [start, end) ms.
TAOBAO_WINDOW_MS = (1_511_539_200_000, 1_512_316_800_000)
_TAOBAO_FIELD_COLUMNS = {
    "user_id": "user_id",
    "product_id": "item_id",
    "category": "category_id",
    "event_type": "behavior_type",
    "timestamp": "timestamp",
}


def _taobao_event(row: _Row, keep_outside_window: bool) -> dict:
    """The event of one Taobao row, or _Skip/_Reject saying why there is none."""
    cells = row.cells
    if not cells:
        raise _Skip("blank_line")
    # The original file has no header; the copy in shared/datasets has one.
    if row.line == 1 and [cell.strip().lower() for cell in cells] == list(TAOBAO_COLUMNS):
        raise _Skip("header")
    if len(cells) != len(TAOBAO_COLUMNS):
        raise _Reject(
            "wrong_column_count",
            f"expected {len(TAOBAO_COLUMNS)} columns ({','.join(TAOBAO_COLUMNS)}), "
            f"got {len(cells)}",
        )
    user, item, category, behavior, seconds = (cell.strip() for cell in cells)
    if not user:
        raise _Reject("missing_user", "column 'user_id' is empty")
    _check_id("user_id", user)
    _check_id("item_id", item)
    _check_id("category_id", category)
    event_type = TAOBAO_EVENT_TYPES.get(behavior)
    if event_type is None:
        raise _Reject(
            "unknown_event_type",
            f"column 'behavior_type' = {behavior[:20]!r} is not one of "
            f"{', '.join(TAOBAO_EVENT_TYPES)}",
        )
    if not _is_digits(seconds):
        raise _Reject("bad_timestamp", "column 'timestamp' is not whole epoch seconds")
    timestamp = int(seconds) * 1000
    start, end = TAOBAO_WINDOW_MS
    if not keep_outside_window and not start <= timestamp < end:
        raise _Skip("outside_window")
    return _new_event(
        TAOBAO,
        row,
        user_id=user,
        event_type=event_type,
        timestamp=timestamp,
        product_id=item,
        category=category,
    )


def import_taobao(
    paths: PathsLike,
    *,
    limit: int | None = None,
    keep_outside_window: bool = False,
    mask_rejects: bool = True,
) -> tuple[Iterator[Item], ImportReport]:
    """Import Taobao UserBehavior CSV files (Alibaba Tianchi dataset 649).

    Columns ``user_id,item_id,category_id,behavior_type,timestamp`` (unix
    seconds, UTC), no header in the original (a first line naming these
    columns is skipped as ``header``). ``pv``, ``cart``, ``buy`` and ``fav``
    become ``product_view``, ``add_to_cart``, ``purchase`` and
    ``add_to_wishlist``; category is the category id; there is no session id
    and no price. Rows outside the official 9-day window
    (``TAOBAO_WINDOW_MS``, known dataset noise) are skipped as
    ``outside_window`` unless ``keep_outside_window``.

    Returns ``(items, report)``; see the module docstring.
    """
    files = _expand(paths)
    _check_limit(limit)
    report = ImportReport(dataset=TAOBAO, sources=[str(path) for path in files])
    rows = itertools.chain.from_iterable(_read_csv(path, ",") for path in files)
    items = _convert_rows(
        report,
        itertools.islice(rows, limit),
        functools.partial(_taobao_event, keep_outside_window=keep_outside_window),
        _TAOBAO_FIELD_COLUMNS,
        mask_rejects,
    )
    return items, report


# ------------------------------------------------------------------ OTTO

OTTO = "otto"
OTTO_EVENT_TYPES = {"clicks": ev.PRODUCT_VIEW, "carts": ev.ADD_TO_CART, "orders": ev.PURCHASE}
_OTTO_FIELD_COLUMNS = {"anonymous_id": "session", "product_id": "aid", "timestamp": "ts"}


def _otto_rows(path: Path) -> Iterator[_Row]:
    """One row per event object; a line that is not a session object is one bad row."""
    for number, text, bad_encoding in _read_lines(path):
        if bad_encoding:
            yield _Row(str(path), number, text, None, ("bad_encoding", "the line is not UTF-8"))
            continue
        if not text.strip():
            yield _Row(str(path), number, text, None)
            continue
        try:
            session_line = json.loads(text)
        except ValueError as exc:
            yield _Row(str(path), number, text, None, ("bad_json", f"not valid JSON: {exc}"))
            continue
        if not isinstance(session_line, dict) or not isinstance(session_line.get("events"), list):
            error = ("missing_field", "field 'events' is missing or not a list")
            yield _Row(str(path), number, text, None, error)
            continue
        session = session_line.get("session")
        if session is None or session == "":
            error = ("missing_user", "field 'session' is missing")
            yield _Row(str(path), number, text, None, error)
            continue
        for obj in session_line["events"]:
            # The row text (and so the id) of one event: its object with its session.
            if isinstance(obj, dict):
                raw = json.dumps({"session": session, **obj}, sort_keys=True, separators=(",", ":"))
            else:
                raw = json.dumps([session, obj], separators=(",", ":"))
            yield _Row(str(path), number, raw, (session, obj))


def _otto_event(row: _Row) -> dict:
    """The event of one OTTO event object, or _Skip/_Reject saying why there is none."""
    if row.cells is None:
        raise _Skip("blank_line")
    session, obj = row.cells
    if type(session) is not int and not (isinstance(session, str) and session.strip()):
        raise _Reject("wrong_type", "field 'session' must be an integer or a string")
    if not isinstance(obj, dict):
        raise _Reject("wrong_type", "an item of field 'events' is not an object")
    event_type = OTTO_EVENT_TYPES.get(obj.get("type"))
    if event_type is None:
        shown = str(obj.get("type"))[:20]
        raise _Reject(
            "unknown_event_type",
            f"field 'type' = {shown!r} is not one of {', '.join(OTTO_EVENT_TYPES)}",
        )
    aid = obj.get("aid")
    if aid is None:
        raise _Reject("missing_field", "field 'aid' is missing")
    if type(aid) is not int:
        raise _Reject("wrong_type", "field 'aid' is not an integer")
    ts = obj.get("ts")
    if type(ts) is not int:
        raise _Reject("bad_timestamp", "field 'ts' is missing or not an integer")
    # The published jsonl has ms; the Kaggle re-release has seconds.
    timestamp = ts * 1000 if abs(ts) < _SECONDS_BELOW else ts
    return _new_event(
        OTTO,
        row,
        anonymous_id=str(session),
        session_id=str(session),
        event_type=event_type,
        timestamp=timestamp,
        product_id=str(aid),
    )


def import_otto(
    paths: PathsLike, *, limit: int | None = None, mask_rejects: bool = True
) -> tuple[Iterator[Item], ImportReport]:
    """Import OTTO RecSys JSON lines (``{"session", "events": [{"aid", "ts", "type"}]}``).

    ``clicks``, ``carts`` and ``orders`` become ``product_view``,
    ``add_to_cart`` and ``purchase``. OTTO has no user id: a session (which
    spans up to four weeks) is one anonymous user, so ``anonymous_id`` and
    ``session_id`` are both the session number. ``ts`` is epoch ms (epoch
    seconds, as in the Kaggle release, are recognised by size). A row here is
    one event object; a line that is not a session object counts as one
    rejected row. Event ids hash the event object together with its session.

    Returns ``(items, report)``; see the module docstring.
    """
    files = _expand(paths)
    _check_limit(limit)
    report = ImportReport(dataset=OTTO, sources=[str(path) for path in files])
    rows = itertools.chain.from_iterable(_otto_rows(path) for path in files)
    items = _convert_rows(
        report, itertools.islice(rows, limit), _otto_event, _OTTO_FIELD_COLUMNS, mask_rejects
    )
    return items, report


# ------------------------------------------------------------------ Diginetica

DIGINETICA = "diginetica"
_VIEWS, _PURCHASES, _CATEGORIES, _PRODUCTS = "views", "purchases", "categories", "products"
# Required columns per file kind, by normalized header name (lower case, letters and digits).
_DIGINETICA_KINDS = (
    (_PURCHASES, {"sessionid", "userid", "itemid", "timeframe", "eventdate", "ordernumber"}),
    (_VIEWS, {"sessionid", "userid", "itemid", "timeframe", "eventdate"}),
    (_CATEGORIES, {"itemid", "categoryid"}),
    (_PRODUCTS, {"itemid", "pricelog2"}),
)
_DIGINETICA_FIELD_COLUMNS = {"timestamp": "eventdate+timeframe", "product_id": "itemId"}


class _Header(NamedTuple):
    names: tuple[str, ...]
    index: dict[str, int]

    def name(self, key: str) -> str:
        return self.names[self.index[key]]


def _normalize(column: str) -> str:
    """A header name reduced to lower-case letters and digits: ``session_id`` -> ``sessionid``."""
    return re.sub(r"[^a-z0-9]", "", column.lower())


def _read_header(path: Path, delimiter: str) -> tuple[str, ...]:
    """The first row of a CSV file, stripped; a config error if there is none."""
    with contextlib.closing(_read_csv(path, delimiter)) as rows:
        first = next(rows, None)
    if first is None or first.error is not None or not first.cells:
        raise ImportConfigError(f"{path} has no readable header row")
    return tuple(cell.strip() for cell in first.cells)


def _diginetica_files(
    paths: list[Path], report: ImportReport
) -> dict[str, list[tuple[Path, _Header]]]:
    """Sort the inputs into views, purchases, categories and products files by header."""
    candidates: list[tuple[Path, bool]] = []
    for path in paths:
        if path.is_dir():
            candidates.extend((member, False) for member in sorted(path.glob("*.csv")))
        else:
            candidates.append((path, True))
    files: dict[str, list[tuple[Path, _Header]]] = {kind: [] for kind, _ in _DIGINETICA_KINDS}
    for path, explicit in candidates:
        names = _read_header(path, ";")
        index: dict[str, int] = {}
        for position, name in enumerate(names):
            index.setdefault(_normalize(name), position)
        kind = next((kind for kind, needed in _DIGINETICA_KINDS if needed <= index.keys()), None)
        if kind is None:
            if explicit:
                raise ImportConfigError(
                    f"{path} is not a Diginetica views, purchases, product-categories or "
                    f"products file (its columns: {';'.join(names)})"
                )
            report.notes.append(f"ignored {path}: not a file this importer reads")
            continue
        files[kind].append((path, _Header(names, index)))
    if not files[_VIEWS]:
        raise ImportConfigError(
            "no Diginetica views file (columns sessionId;userId;itemId;timeframe;eventdate) "
            f"among {', '.join(str(path) for path in paths)}"
        )
    return files


class _DigiFields(NamedTuple):
    session: str
    user: str | None
    item: str
    timeframe: int
    day_ms: int
    order: str | None


@functools.lru_cache(maxsize=4096)
def _day_ms(text: str) -> int:
    """Epoch ms of 00:00 UTC of a YYYY-MM-DD date; ValueError if it is not one."""
    return (datetime.combine(date.fromisoformat(text), time(), UTC) - _EPOCH) // _ONE_MS


def _digi_fields(row: _Row, header: _Header) -> _DigiFields:
    """The typed cells of a views or purchases row, or a reject naming the column."""
    cells = row.cells
    if len(cells) != len(header.names):
        raise _Reject(
            "wrong_column_count",
            f"expected {len(header.names)} columns ({';'.join(header.names)}), got {len(cells)}",
        )

    def cell(key: str) -> str:
        return cells[header.index[key]].strip()

    session = _check_id(header.name("sessionid"), cell("sessionid"))
    user = cell("userid")
    user = None if user in ("", "NA") else _check_id(header.name("userid"), user)
    item = _check_id(header.name("itemid"), cell("itemid"))
    timeframe = cell("timeframe")
    if not _is_digits(timeframe):
        raise _Reject(
            "bad_timestamp", f"column {header.name('timeframe')!r} is not whole milliseconds"
        )
    try:
        day_ms = _day_ms(cell("eventdate"))
    except ValueError:
        raise _Reject(
            "bad_timestamp", f"column {header.name('eventdate')!r} is not a YYYY-MM-DD date"
        ) from None
    order = None
    if "ordernumber" in header.index:
        order = _check_id(header.name("ordernumber"), cell("ordernumber"))
    return _DigiFields(session, user, item, int(timeframe), day_ms, order)


def _digi_fields_or_none(row: _Row) -> _DigiFields | None:
    """Typed cells of a usable data row; None for headers and bad rows (counted later)."""
    if row.error is not None or not row.cells or row.line == 1:
        return None
    try:
        return _digi_fields(row, row.meta[1])
    except _Reject:
        return None


class _Session:
    """What the import knows about one Diginetica session before it emits events.

    Each event says the session started in ``[day - timeframe, day + 1 day -
    timeframe)``; ``[start, end)`` is what all its events agree on, and
    ``start`` is used. ``start >= end`` means the dates contradict each other.
    """

    __slots__ = ("start", "end", "users", "purchases")

    def __init__(self):
        self.start = -(2**63)
        self.end = 2**63
        self.users: set[str] = set()
        self.purchases = 0

    def add(self, fields: _DigiFields) -> None:
        self.start = max(self.start, fields.day_ms - fields.timeframe)
        self.end = min(self.end, fields.day_ms + ev.DAY_MS - fields.timeframe)
        if fields.user:
            self.users.add(fields.user)

    def user(self) -> str | None:
        """The one user seen in the session, None if none or several."""
        return next(iter(self.users)) if len(self.users) == 1 else None


def _lookup(
    files: list[tuple[Path, _Header]], column: str, items: set[str], report: ImportReport
) -> dict[str, str]:
    """item id -> the value of ``column`` for the wanted items, first row wins."""
    found: dict[str, str] = {}
    for path, header in files:
        position = header.index[column]
        item_position = header.index["itemid"]
        for row in _read_csv(path, ";"):
            if row.line == 1:
                continue
            cells = row.cells
            if row.error is not None or not cells or len(cells) != len(header.names):
                report._count(report.info, f"{column}_rows_unusable")
                continue
            item = cells[item_position].strip()
            if item in items:
                found.setdefault(item, cells[position].strip())
    return found


def _prices(
    files: list[tuple[Path, _Header]], items: set[str], report: ImportReport
) -> dict[str, float]:
    """item id -> price for the wanted items; ``pricelog2`` is log2 of the price."""
    prices = {}
    for item, text in _lookup(files, "pricelog2", items, report).items():
        if _NUMBER.fullmatch(text):
            prices[item] = round(2.0 ** float(text), 2)
    return prices


def import_diginetica(
    paths: PathsLike, *, limit: int | None = None, mask_rejects: bool = True
) -> tuple[Iterator[Item], ImportReport]:
    """Import Diginetica (CIKM Cup 2016) views, joined with purchases and categories.

    ``paths`` are the dataset folder or its files (``;`` separated, with a
    header), recognised by their columns: item views (``sessionId;userId;
    itemId;timeframe;eventdate``, required), purchases (the same plus
    ``ordernumber``), product categories (``itemId;categoryId``) and products
    (``itemId;pricelog2;...``, optional: price = 2 ** pricelog2, approximate).

    * Views become ``product_view``. Purchases become ``purchase`` (with
      ``properties.order_number``) only for sessions in the views files read;
      the others are skipped as ``session_not_in_views``.
    * ``category`` is the item's category id, ``session_id`` the sessionId.
    * User: the row's userId; if it has none (``NA``), the session's userId
      when the session has exactly one (so a session whose shopper signs in
      mid-way, or only at checkout, stays one profile); else the session is
      an anonymous user, ``anonymous_id`` = sessionId.
    * Time: Diginetica gives ``eventdate`` (a date) and ``timeframe`` (ms since
      the session started). The session start is estimated as the earliest
      instant that puts every event of the session (views and purchases) on its
      own eventdate (UTC), i.e. ``max(eventdate 00:00 - timeframe)``;
      ``timestamp = start + timeframe``. Order and gaps within a session are
      exact; absolute times are approximate (by up to a day).

    Views are emitted in file order, then the joined purchases. Rows read
    count views and purchases rows; category and product rows are lookups,
    counted in ``info`` only when unusable. Returns ``(items, report)``.
    """
    _check_limit(limit)
    report = ImportReport(dataset=DIGINETICA)
    files = _diginetica_files(_expand(paths, allow_dirs=True), report)
    kinds = (_VIEWS, _PURCHASES, _CATEGORIES, _PRODUCTS)
    report.sources = [str(path) for kind in kinds for path, _ in files[kind]]
    return _DigineticaJoin(files, limit, report).items(mask_rejects), report


class _DigineticaJoin:
    """The two passes of a Diginetica import over files already sorted by kind.

    ``learn`` reads the views (up to ``limit`` rows) and the purchases to find
    each session's start and users and which items to look up; ``convert``
    then turns one views or purchases row into an event.
    """

    def __init__(
        self,
        files: dict[str, list[tuple[Path, _Header]]],
        limit: int | None,
        report: ImportReport,
    ):
        self._files = files
        self._limit = limit
        self._report = report
        self._sessions: dict[str, _Session] = {}
        self._categories: dict[str, str] = {}
        self._prices: dict[str, float] = {}

    def _rows(self, kind: str) -> Iterator[_Row]:
        return itertools.chain.from_iterable(
            _read_csv(path, ";", (kind, header)) for path, header in self._files[kind]
        )

    def _view_rows(self) -> Iterator[_Row]:
        return itertools.islice(self._rows(_VIEWS), self._limit)

    def items(self, mask: bool) -> Iterator[Item]:
        """Learn the sessions, then convert views (file order) and joined purchases."""
        self._learn()
        yield from _convert_rows(
            self._report,
            itertools.chain(self._view_rows(), self._rows(_PURCHASES)),
            self._convert,
            _DIGINETICA_FIELD_COLUMNS,
            mask,
        )

    def _learn(self) -> None:
        sessions = self._sessions
        items: set[str] = set()
        for row in self._view_rows():
            fields = _digi_fields_or_none(row)
            if fields is not None:
                sessions.setdefault(fields.session, _Session()).add(fields)
                items.add(fields.item)
        for row in self._rows(_PURCHASES):
            fields = _digi_fields_or_none(row)
            if fields is not None and fields.session in sessions:
                session = sessions[fields.session]
                session.add(fields)
                session.purchases += 1
                items.add(fields.item)
        # Only the items seen are looked up: the category file has 184k rows.
        self._categories = _lookup(self._files[_CATEGORIES], "categoryid", items, self._report)
        self._prices = _prices(self._files[_PRODUCTS], items, self._report)
        info = self._report.info
        info["sessions"] = len(sessions)
        info["sessions_with_purchases"] = sum(1 for s in sessions.values() if s.purchases)
        info["sessions_with_several_users"] = sum(1 for s in sessions.values() if len(s.users) > 1)
        info["sessions_with_inconsistent_dates"] = sum(
            1 for s in sessions.values() if s.start >= s.end
        )
        info["events_user_from_session"] = 0
        info["events_without_category"] = 0

    def _convert(self, row: _Row) -> dict:
        kind, header = row.meta
        if not row.cells:
            raise _Skip("blank_line")
        if row.line == 1:
            raise _Skip("header")
        fields = _digi_fields(row, header)
        session = self._sessions.get(fields.session)
        if session is None:
            # Only purchases get here: the learning pass read the same view rows.
            raise _Skip("session_not_in_views")
        info = self._report.info
        user = fields.user or session.user()
        if user and not fields.user:
            info["events_user_from_session"] += 1
        category = self._categories.get(fields.item)
        if category is None:
            info["events_without_category"] += 1
        return _new_event(
            DIGINETICA,
            row,
            user_id=user,
            anonymous_id=None if user else fields.session,
            session_id=fields.session,
            event_type=ev.PURCHASE if kind == _PURCHASES else ev.PRODUCT_VIEW,
            timestamp=session.start + fields.timeframe,
            product_id=fields.item,
            category=category,
            price=self._prices.get(fields.item),
            properties={"order_number": fields.order} if fields.order else None,
        )


# ------------------------------------------------------------------ SR-GNN sessions

SRGNN = "srgnn"
SRGNN_SPLITS = ("train", "test")
# The synthetic time rule: the n-th click of the files (train then test, in file order,
# from 0) happens at SRGNN_ORIGIN_MS + n * SRGNN_CLICK_MS, so time order is click order.
SRGNN_ORIGIN_MS = 1_451_606_400_000  # 2016-01-01T00:00:00Z, the CIKM Cup 2016's year
SRGNN_CLICK_MS = 1_000
_SRGNN_FIELD_COLUMNS = {"product_id": "item", "timestamp": "click number"}


def _open_text_lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    """``_read_lines`` of a plain or gzip file (told apart by its first bytes)."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    if not gzipped:
        yield from _read_lines(path)
        return
    import gzip

    try:
        with gzip.open(path, "rb") as stream:
            for number, data in enumerate(stream, start=1):
                try:
                    yield number, data.decode("utf-8").rstrip("\r\n"), False
                except UnicodeDecodeError:
                    yield number, data.decode("utf-8", "backslashreplace").rstrip("\r\n"), True
    except (OSError, EOFError) as exc:
        raise ImportConfigError(f"input {str(path)!r} is not a readable gzip file: {exc}") from exc


def _srgnn_rows(path: Path, split: str, clicks: itertools.count) -> Iterator[_Row]:
    """One row per click (an item id of a session line); a blank line is one row."""
    for number, text, bad_encoding in _open_text_lines(path):
        if bad_encoding:
            yield _Row(str(path), number, text, None, ("bad_encoding", "the line is not UTF-8"))
            continue
        tokens = text.split()
        if not tokens:
            yield _Row(str(path), number, text, None)
            continue
        for position, token in enumerate(tokens):
            # The row text (and so the id) of one click: its line, position and item.
            raw = f"{number}:{position}:{token}"
            yield _Row(str(path), number, raw, (split, number, token, next(clicks)))


def _srgnn_event(row: _Row) -> dict:
    """The event of one click, or _Skip/_Reject saying why there is none."""
    if row.cells is None:
        raise _Skip("blank_line")
    split, line, token, click = row.cells
    if not _is_digits(token):
        raise _Reject("wrong_type", f"item {token[:20]!r} is not a whole number")
    session = f"{split}-{line}"
    return _new_event(
        SRGNN,
        row,
        anonymous_id=session,
        session_id=session,
        event_type=ev.PRODUCT_VIEW,
        timestamp=SRGNN_ORIGIN_MS + click * SRGNN_CLICK_MS,
        product_id=token,
        properties={"split": split},
    )


def import_srgnn(
    train: str | os.PathLike,
    test: str | os.PathLike,
    *,
    limit: int | None = None,
    mask_rejects: bool = True,
) -> tuple[Iterator[Item], ImportReport]:
    """Import the session-recommendation benchmark's sessions (SR-GNN's preprocessing).

    Each file has one session per line, item ids separated by spaces, in
    click order, sessions in date order (plain text or gzip, as shipped in
    ``diginetica_srgnn``). The files carry no time, user or session id, so:

    * every session is one anonymous user, ``anonymous_id`` and ``session_id``
      ``train-LINE`` or ``test-LINE``;
    * the synthetic time rule: the n-th click of both files (train first, in
      file order, counting from 0) is at ``SRGNN_ORIGIN_MS + n`` seconds, so
      event-time order is the files' click order and sessions never overlap;
    * each click is a ``product_view`` with ``properties.split`` = ``train``
      or ``test``: the test period's events are marked.

    A row is one click (its id hashes the line, the position and the item); a
    token that is not a whole number is rejected as ``wrong_type`` (it still
    takes its second); a blank line is skipped. ``limit`` caps the rows read.

    Returns ``(items, report)``; see the module docstring.
    """
    files = [_expand(train)[0], _expand(test)[0]]
    if files[0].resolve() == files[1].resolve():
        raise ImportConfigError("the train and the test file are the same file")
    _check_limit(limit)
    report = ImportReport(dataset=SRGNN, sources=[str(path) for path in files])
    clicks = itertools.count()
    rows = itertools.chain.from_iterable(
        _srgnn_rows(path, split, clicks) for path, split in zip(files, SRGNN_SPLITS, strict=True)
    )
    items = _convert_rows(
        report, itertools.islice(rows, limit), _srgnn_event, _SRGNN_FIELD_COLUMNS, mask_rejects
    )
    return items, report


# ------------------------------------------------------------------ generic CSV

CSV = "csv"
TIME_FORMATS = ("epoch_s", "epoch_ms")
_NUMERIC_KINDS = {"int": "a whole number", "long": "a whole number", "double": "a number"}


def _csv_plan(
    header: tuple[str, ...], mapping: dict[str, str], path: Path
) -> tuple[int, tuple[tuple[str, int, str, str], ...]]:
    """(column count, ((field, column index, column name, avro kind), ...)) for one file."""
    plan = []
    for event_field, column in mapping.items():
        if column not in header:
            raise ImportConfigError(
                f"column {column!r} (mapped to event field {event_field!r}) is not in the header "
                f"of {path}; its columns: {', '.join(header)}",
                options=("mapping",),
            )
        plan.append((event_field, header.index(column), column, _FIELD_KINDS[event_field]))
    return len(header), tuple(plan)


def _check_csv_options(
    mapping: dict[str, str],
    time_format: str | None,
    event_type_map: dict[str, str] | None,
    delimiter: str,
    event_type: str | None,
) -> None:
    """Raise ImportConfigError, naming the field or option, for unusable CSV options."""
    if not isinstance(mapping, dict) or not mapping:
        raise ImportConfigError(
            "mapping must be a non-empty dict of event_field -> csv_column", options=("mapping",)
        )
    for event_field, column in mapping.items():
        if event_field not in _FIELD_KINDS:
            raise ImportConfigError(
                f"mapping names unknown event field {event_field!r}; event fields: "
                f"{', '.join(_FIELD_KINDS)}",
                options=("mapping",),
            )
        if _FIELD_KINDS[event_field].startswith("map<"):
            raise ImportConfigError(
                f"event field {event_field!r} is a map and cannot come from one CSV column",
                options=("mapping",),
            )
        if not isinstance(column, str) or not column:
            raise ImportConfigError(
                f"event field {event_field!r} is mapped to an empty column", options=("mapping",)
            )
    if "timestamp" not in mapping:
        raise ImportConfigError(
            "mapping has no column for event field 'timestamp'", options=("mapping",)
        )
    if "event_type" in mapping and event_type is not None:
        raise ImportConfigError(
            f"event field 'event_type' is both mapped to column {mapping['event_type']!r} and "
            f"given as the constant {event_type!r}; give one",
            options=("mapping", "event_type"),
        )
    if "event_type" not in mapping and event_type is None:
        raise ImportConfigError(
            "mapping has no column for event field 'event_type' and no constant event type "
            "is given",
            options=("mapping", "event_type"),
        )
    if "user_id" not in mapping and "anonymous_id" not in mapping:
        raise ImportConfigError(
            "mapping has no column for event field 'user_id' or 'anonymous_id' (one is required)",
            options=("mapping",),
        )
    if time_format is not None and time_format not in TIME_FORMATS and "%" not in time_format:
        raise ImportConfigError(
            f"time format {time_format!r} is not 'epoch_s', 'epoch_ms' or a strptime format",
            options=("time_format",),
        )
    for source, target in (event_type_map or {}).items():
        if not isinstance(source, str) or not isinstance(target, str) or not target:
            raise ImportConfigError(
                f"event type map entry {source!r} -> {target!r} is not usable",
                options=("event_type_map",),
            )
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
        raise ImportConfigError(
            f"delimiter {delimiter!r} must be one character (not a quote)",
            options=("delimiter",),
        )


def _csv_template(
    event_type: str | None, event_type_map: dict[str, str], report: ImportReport
) -> dict:
    """The event every CSV row starts from: all fields None, but the constant event type.

    The constant is read as an ``event_type`` cell is (stripped, renamed by
    ``event_type_map``, then validated), once: a bad one would reject every
    row, so it is a config error. A type outside ``KNOWN_EVENT_TYPES`` is kept,
    as a cell's would be, with a note in the report in case it is a typo.
    """
    template = dict(_BLANK_EVENT)
    if event_type is None:
        return template
    if not isinstance(event_type, str):
        raise ImportConfigError(
            f"constant event type must be a string, got {type(event_type).__name__}",
            options=("event_type",),
        )
    text = event_type.strip()
    if not text:
        raise ImportConfigError(
            f"constant event type {event_type!r} is empty", options=("event_type",)
        )
    value = event_type_map.get(text, text)
    # The checks a row's event type gets, on a record that is valid but for it.
    probe = {"event_id": "-", "user_id": "-", "timestamp": MIN_TIMESTAMP_MS, "event_type": value}
    _, problem = validate_event(probe)
    if problem is not None:
        raise ImportConfigError(f"constant event type: {problem[1]}", options=("event_type",))
    if value not in ev.KNOWN_EVENT_TYPES:
        report.notes.append(
            f"every event has type {value!r}, which is not a known type: kept, but it "
            "updates fewer things"
        )
    template["event_type"] = value
    return template


def _csv_event(
    row: _Row,
    dataset: str,
    time_format: str | None,
    event_type_map: dict[str, str],
    template: dict,
) -> dict:
    """The event of one CSV row per the file's plan, or _Skip/_Reject saying why not."""
    cells = row.cells
    if not cells:
        raise _Skip("blank_line")
    if row.line == 1:
        raise _Skip("header")
    width, plan = row.meta
    if len(cells) != width:
        raise _Reject(
            "wrong_column_count", f"expected {width} columns (as in the header), got {len(cells)}"
        )
    event = dict(template)
    columns = {}
    for event_field, index, column, kind in plan:
        columns[event_field] = column
        text = cells[index].strip()
        if not text:
            continue
        if event_field == "timestamp":
            try:
                event["timestamp"] = parse_time_ms(text, time_format)
            except (ValueError, OverflowError):
                expected = time_format or "epoch seconds, epoch ms or ISO 8601"
                raise _Reject(
                    "bad_timestamp",
                    f"column {column!r} (field 'timestamp') is not a time ({expected})",
                ) from None
        elif event_field == "event_type":
            event["event_type"] = event_type_map.get(text, text)
        elif kind in _NUMERIC_KINDS:
            pattern = _NUMBER if kind == "double" else _WHOLE
            if not pattern.fullmatch(text):
                raise _Reject(
                    "wrong_type",
                    f"column {column!r} (field {event_field!r}) is not {_NUMERIC_KINDS[kind]}",
                )
            event[event_field] = float(text) if kind == "double" else int(Decimal(text))
        else:
            event[event_field] = text
    if event["timestamp"] is None:
        raise _Reject(
            "bad_timestamp", f"column {columns['timestamp']!r} (field 'timestamp') is empty"
        )
    if not event["event_type"]:
        raise _Reject(
            "missing_field", f"column {columns['event_type']!r} (field 'event_type') is empty"
        )
    if not event["user_id"] and not event["anonymous_id"]:
        named = " and ".join(
            f"column {columns[name]!r} (field {name!r})"
            for name in ("user_id", "anonymous_id")
            if name in columns
        )
        raise _Reject("missing_user", f"no user: {named} empty")
    if not event["event_id"]:
        event["event_id"] = make_event_id(dataset, row.source, row.raw)
    return event


def import_csv(
    paths: PathsLike,
    mapping: dict[str, str],
    time_format: str | None = None,
    event_type_map: dict[str, str] | None = None,
    delimiter: str = ",",
    *,
    event_type: str | None = None,
    dataset: str = CSV,
    limit: int | None = None,
    mask_rejects: bool = True,
) -> tuple[Iterator[Item], ImportReport]:
    """Import CSV files with a header, mapping ``{event_field: csv_column}``.

    Required mappings: ``timestamp``, ``user_id`` or ``anonymous_id``, and
    ``event_type``, unless the file holds one kind of event and has no such
    column (e.g. a clicks-only export): then ``event_type`` is given as a
    constant for every row instead (both at once is an error). Unmapped
    columns are ignored. ``time_format``: see ``parse_time_ms``. Event types,
    from a column or the constant, pass through ``event_type_map``; values not
    in it are kept as they are (unknown types are valid events). Numeric
    fields (price, list_price, quantity, scroll_depth, dwell_ms) must be
    numbers, else the row is rejected as ``wrong_type`` naming the field and
    column. Empty cells are ``None``. Without an ``event_id`` column (or with
    an empty cell), the id is derived from the row (see ``make_event_id``,
    with ``dataset`` as the dataset name).

    Raises ``ImportConfigError`` at once, naming the field or column, for an
    unknown or unmappable event field, a missing required mapping, an event
    type given both ways, an empty constant event type, a column absent from
    any file's header, or a bad time format or delimiter.
    Returns ``(items, report)``; see the module docstring.
    """
    _check_csv_options(mapping, time_format, event_type_map, delimiter, event_type)
    _check_limit(limit)
    event_type_map = dict(event_type_map or {})
    files = _expand(paths)
    plans = [_csv_plan(_read_header(path, delimiter), mapping, path) for path in files]
    report = ImportReport(dataset=dataset, sources=[str(path) for path in files])
    template = _csv_template(event_type, event_type_map, report)
    rows = itertools.chain.from_iterable(
        _read_csv(path, delimiter, plan) for path, plan in zip(files, plans)
    )
    convert = functools.partial(
        _csv_event,
        dataset=dataset,
        time_format=time_format,
        event_type_map=event_type_map,
        template=template,
    )
    items = _convert_rows(
        report, itertools.islice(rows, limit), convert, dict(mapping), mask_rejects
    )
    return items, report
