"""Importers against the real datasets in ../shared/datasets and hand-written bad files.

Expected values are computed with plain ``csv``/``json`` on the same rows, never
with the importer's own helpers.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.validation import FIELD_NAMES, MAX_STRING_CHARS
from runners import import_cmd
from schemas.codecs import read_container
from tests.conftest import DATASETS
from transforms import importers
from transforms.importers import EVENT, ImportConfigError

TAOBAO = DATASETS / "taobao_userbehavior" / "UserBehavior.csv"
DIGINETICA = DATASETS / "diginetica_cikm2016"
OTTO = DATASETS / "otto_mini" / "train.jsonl"

needs_datasets = pytest.mark.skipif(
    not DATASETS.exists(), reason=f"real datasets not found at {DATASETS}"
)

# Enough lines to include the first five of the 35 rows outside Taobao's 9-day window.
TAOBAO_LINES = 12_000
TAOBAO_TYPES = {"pv": "product_view", "cart": "add_to_cart", "buy": "purchase"}
TAOBAO_TYPES["fav"] = "add_to_wishlist"
WINDOW_S = (1_511_539_200, 1_512_316_800)


def run(import_result):
    """Consume an import: (events, rejects, report)."""
    items, report = import_result
    events, rejects = [], []
    for kind, record in items:
        (events if kind == EVENT else rejects).append(record)
    return events, rejects, report


def head_lines(path: Path, count: int) -> list[str]:
    with open(path, encoding="utf-8") as source:
        return [line for _, line in zip(range(count), source)]


# ---------------------------------------------------------------- Taobao, real data


@needs_datasets
def test_taobao_head_matches_plain_csv(tmp_path):
    out = tmp_path / "taobao.avro"
    items, report = importers.import_taobao(TAOBAO, limit=TAOBAO_LINES)
    written, rejected = importers.write_events(items, out)

    rows = list(csv.reader(head_lines(TAOBAO, TAOBAO_LINES)))
    assert rows[0] == ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]
    inside = [row for row in rows[1:] if WINDOW_S[0] <= int(row[4]) < WINDOW_S[1]]
    expected = collections.Counter(TAOBAO_TYPES[row[3]] for row in inside)

    assert report.reconciles()
    assert report.rows_read == TAOBAO_LINES
    assert report.skipped == {"header": 1, "outside_window": len(rows) - 1 - len(inside)}
    assert report.skipped["outside_window"] == 5
    assert report.rejected == {} and rejected == 0
    assert written == report.written == len(inside)

    records = list(read_container(out))
    assert collections.Counter(record["event_type"] for record in records) == expected
    assert all(set(record) == FIELD_NAMES for record in records)
    first = records[0]
    assert (first["user_id"], first["product_id"], first["category"]) == ("1", "2268318", "2520377")
    assert first["timestamp"] == 1_511_544_070_000
    assert first["session_id"] is None and first["price"] is None
    assert [r["timestamp"] for r in records] == [int(row[4]) * 1000 for row in inside]
    assert (tmp_path / "taobao.rejects.jsonl").read_text() == ""


@needs_datasets
def test_taobao_ids_are_deterministic_and_ignore_the_folder(tmp_path):
    first, _, _ = run(importers.import_taobao(TAOBAO, limit=2000))
    second, _, _ = run(importers.import_taobao(TAOBAO, limit=2000))
    copy = tmp_path / "elsewhere" / TAOBAO.name
    copy.parent.mkdir()
    copy.write_text("".join(head_lines(TAOBAO, 2000)))
    moved, _, _ = run(importers.import_taobao(copy))

    ids = [event["event_id"] for event in first]
    assert ids == [event["event_id"] for event in second]
    assert ids == [event["event_id"] for event in moved]
    assert len(set(ids)) == len(ids) == 1999  # no duplicate rows in this head
    assert all(len(event_id) == importers.ID_HEX_CHARS for event_id in ids)
    renamed = tmp_path / "other.csv"
    shutil.copy(copy, renamed)
    other, _, _ = run(importers.import_taobao(renamed))
    assert not {e["event_id"] for e in other} & set(ids)


@needs_datasets
def test_identical_duplicate_rows_get_the_same_id(tmp_path):
    lines = head_lines(TAOBAO, 21)[1:]
    path = tmp_path / "dups.csv"
    path.write_text("".join(lines + [lines[4], lines[4].rstrip("\n") + "\r\n"]))
    events, rejects, report = run(importers.import_taobao(path))

    assert report.written == 22 and not rejects and report.reconciles()
    ids = [event["event_id"] for event in events]
    # Copies are kept by the importer; the pipeline's Deduplicate drops them.
    assert ids[4] == ids[20] == ids[21]
    assert len(set(ids)) == 20


# ---------------------------------------------------------------- Taobao, bad rows


TAOBAO_BAD = [
    (b"user_id,item_id,category_id,behavior_type,timestamp", "skipped", "header"),
    (b"1,2268318,2520377,pv,1511544070", "written", None),
    (b"", "skipped", "blank_line"),
    (b"1,2268318,2520377,pv", "rejected", "wrong_column_count"),
    (b",2268318,2520377,pv,1511544070", "rejected", "missing_user"),
    (b"u1,2268318,2520377,pv,1511544070", "rejected", "wrong_type"),
    (b"1,abc,2520377,pv,1511544070", "rejected", "wrong_type"),
    (b"1,2268318,,pv,1511544070", "rejected", "missing_field"),
    (b"1,2268318,2520377,click,1511544070", "rejected", "unknown_event_type"),
    (b"1,2268318,2520377,buy,2017-11-24", "rejected", "bad_timestamp"),
    (b"1,2268318,2520377,buy,1505117799", "skipped", "outside_window"),
    (b'1,"2268318"x,2520377,pv,1511544070', "rejected", "malformed_csv"),
    (b"1,2268318,2520377,pv,15115\xff44070", "rejected", "bad_encoding"),
    (b"1," * 150 + b"1", "rejected", "wrong_column_count"),
    (b"3,2333346,2520771,fav,1511561733", "written", None),
]


def test_taobao_bad_rows_are_counted_and_set_aside(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"\n".join(line for line, _, _ in TAOBAO_BAD) + b"\n")
    events, rejects, report = run(importers.import_taobao(path))

    assert report.reconciles() and report.rows_read == len(TAOBAO_BAD)
    assert report.written == len(events) == 2
    assert report.skipped == {"header": 1, "blank_line": 1, "outside_window": 1}
    expected = collections.Counter(
        reason for _, outcome, reason in TAOBAO_BAD if outcome == "rejected"
    )
    assert report.rejected == dict(expected)
    lines = {n for n, (_, outcome, _) in enumerate(TAOBAO_BAD, start=1) if outcome == "rejected"}
    assert {reject["line"] for reject in rejects} == lines
    by_line = {reject["line"]: reject for reject in rejects}
    assert "'user_id'" in by_line[6]["detail"] and "'item_id'" in by_line[7]["detail"]
    assert "'category_id'" in by_line[8]["detail"]
    assert "'behavior_type'" in by_line[9]["detail"] and "'click'" in by_line[9]["detail"]
    assert "'timestamp'" in by_line[10]["detail"]
    for reject in rejects:
        assert set(reject) == {"source", "line", "reason", "detail", "row"}
        assert reject["source"] == str(path)
        assert len(reject["row"]) <= importers.REJECT_ROW_CHARS
    # Rows are masked like dead letters unless asked otherwise.
    assert "2520377" not in by_line[7]["row"] and by_line[7]["row"].startswith("1,abc,")
    assert by_line[14]["row"].endswith("...")
    _, raw_rejects, _ = run(importers.import_taobao(path, mask_rejects=False))
    assert raw_rejects[3]["row"] == "1,abc,2520377,pv,1511544070"


def test_taobao_validation_reasons_name_the_column(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("1,2268318,2520377,pv,5\n1,2268318,2520377,pv,1505117799\n")
    events, rejects, report = run(importers.import_taobao(path, keep_outside_window=True))
    assert report.rejected == {"timestamp_out_of_range": 1} and report.written == 1
    assert "(column 'timestamp')" in rejects[0]["detail"]
    assert events[0]["timestamp"] == 1_505_117_799_000


def test_limit_counts_rows_read(tmp_path):
    path = tmp_path / "few.csv"
    path.write_text("1,2,3,pv,1511544070\n" * 5)
    events, _, report = run(importers.import_taobao(path, limit=3))
    assert report.rows_read == 3 and len(events) == 3
    with pytest.raises(ImportConfigError, match="limit"):
        importers.import_taobao(path, limit=-1)


def test_missing_input_is_a_config_error(tmp_path):
    with pytest.raises(ImportConfigError, match="nope.csv"):
        importers.import_taobao(tmp_path / "nope.csv")


# ---------------------------------------------------------------- generic CSV

MAPPING = {
    "timestamp": "ts",
    "user_id": "uid",
    "anonymous_id": "cookie",
    "event_type": "kind",
    "product_id": "sku",
    "price": "amount",
    "quantity": "qty",
    "scroll_depth": "depth",
    "query": "q",
}
CSV_ROWS = [
    ("ts,uid,cookie,kind,sku,amount,qty,depth,q", "skipped", "header"),
    ("2024-03-01T10:00:00Z,u1,,view,A1,9.99,2,0.5,", "written", None),
    ("1709287200,,c9,buy,A1,9.99,1,,", "written", None),
    ('1709287200000,u2,,search,,,,,"red, long\nshoes"', "written", None),
    ("1709287200,u2,,hover,A2,,,,", "written", None),
    ("1709287200,u2,,view,A2,,", "rejected", "wrong_column_count"),
    ("yesterday,u2,,view,A2,,,,", "rejected", "bad_timestamp"),
    ("1709287200,,,view,A2,,,,", "rejected", "missing_user"),
    ("1709287200,u2,,view,A2,abc,,,", "rejected", "wrong_type"),
    ("1709287200,u2,,view,A2,,1.5,,", "rejected", "wrong_type"),
    ("1709287200,u2,,,A2,,,,", "rejected", "missing_field"),
    ("5,u2,,view,A2,,,,", "rejected", "timestamp_out_of_range"),
    ("1709287200,u2,,view,A2,,,1.5,", "rejected", "value_out_of_range"),
    ('1709287200,u2,,view,"A2"x,,,,', "rejected", "malformed_csv"),
    ("", "skipped", "blank_line"),
]


def test_csv_converts_types_and_sets_bad_rows_aside(tmp_path):
    path = tmp_path / "shop.csv"
    path.write_text("\n".join(row for row, _, _ in CSV_ROWS) + "\n")
    result = importers.import_csv(
        path, MAPPING, event_type_map={"view": "product_view", "buy": "purchase"}
    )
    events, rejects, report = run(result)

    assert report.reconciles() and report.rows_read == len(CSV_ROWS)
    assert report.skipped == {"header": 1, "blank_line": 1}
    expected = collections.Counter(
        reason for _, outcome, reason in CSV_ROWS if outcome == "rejected"
    )
    assert report.rejected == dict(expected)
    view, buy, search, hover = events
    assert view["event_type"] == "product_view" and view["timestamp"] == 1_709_287_200_000
    assert (view["price"], view["quantity"], view["scroll_depth"]) == (9.99, 2, 0.5)
    assert view["anonymous_id"] is None and view["query"] is None
    assert buy["event_type"] == "purchase" and buy["anonymous_id"] == "c9"
    assert buy["timestamp"] == search["timestamp"] == 1_709_287_200_000
    assert search["query"] == "red, long\nshoes" and hover["event_type"] == "hover"
    assert set(view) == FIELD_NAMES

    # The quoted newline makes row 4 two lines long: later rows report file lines.
    details = {reject["line"]: (reject["reason"], reject["detail"]) for reject in rejects}
    assert details[10] == ("wrong_type", "column 'amount' (field 'price') is not a number")
    assert details[11][1] == "column 'qty' (field 'quantity') is not a whole number"
    assert "'ts'" in details[8][1] and "'ts'" in details[13][1]
    assert "'kind'" in details[12][1]
    assert "'uid'" in details[9][1] and "'cookie'" in details[9][1]
    assert "(column 'depth')" in details[14][1]


@pytest.mark.parametrize(
    ("time_format", "text", "expected"),
    [
        ("epoch_s", "1511544070", 1_511_544_070_000),
        ("epoch_s", "1511544070.25", 1_511_544_070_250),
        ("epoch_ms", "1511544070123", 1_511_544_070_123),
        ("%d.%m.%Y %H:%M:%S", "24.11.2017 17:21:10", 1_511_544_070_000),
        (None, "2017-11-25T01:21:10+08:00", 1_511_544_070_000),
    ],
)
def test_csv_time_formats(tmp_path, time_format, text, expected):
    path = tmp_path / "t.tsv"
    path.write_text(f"when\twho\twhat\n{text}\tu1\tclick\n")
    mapping = {"timestamp": "when", "user_id": "who", "event_type": "what"}
    events, _, report = run(importers.import_csv(path, mapping, time_format, delimiter="\t"))
    assert report.written == 1 and events[0]["timestamp"] == expected


def test_csv_ids_come_from_the_row_or_the_id_column(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("id,ts,u,t\nabc,1511544070,u1,click\n,1511544070,u1,click\n")
    mapping = {"event_id": "id", "timestamp": "ts", "user_id": "u", "event_type": "t"}
    events, _, _ = run(importers.import_csv(path, mapping))
    assert events[0]["event_id"] == "abc"
    assert events[1]["event_id"] == importers.make_event_id("csv", path, ",1511544070,u1,click")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "kind"}, "unknown event field 'colour'"),
        ({"price": "cost"}, "column 'cost' (mapped to event field 'price')"),
        ({"consent": "kind"}, "event field 'consent' is a map"),
        ({"event_type": None}, "event field 'event_type'"),
        ({"timestamp": None}, "event field 'timestamp'"),
        ({"user_id": None, "anonymous_id": None}, "'user_id' or 'anonymous_id'"),
    ],
)
def test_csv_mapping_errors_name_the_field(tmp_path, change, message):
    path = tmp_path / "shop.csv"
    path.write_text(CSV_ROWS[0][0] + "\n")
    mapping = {**MAPPING, **change}
    mapping = {field: column for field, column in mapping.items() if column is not None}
    with pytest.raises(ImportConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        importers.import_csv(path, mapping)


def test_csv_option_errors(tmp_path):
    path = tmp_path / "shop.csv"
    path.write_text(CSV_ROWS[0][0] + "\n")
    with pytest.raises(ImportConfigError, match="time format 'yyyy'"):
        importers.import_csv(path, MAPPING, time_format="yyyy")
    with pytest.raises(ImportConfigError, match="delimiter"):
        importers.import_csv(path, MAPPING, delimiter=";;")
    # A second file missing a column fails at the start too, naming that file.
    other = tmp_path / "other.csv"
    other.write_text("ts,uid,kind\n")
    with pytest.raises(ImportConfigError, match="other.csv"):
        importers.import_csv([path, other], MAPPING)


# A clicks-only export: one kind of event, no event type column.
CLICKS_ROWS = [
    ("ts,visitor,sku", "skipped", "header"),
    ("1709287200,u1,A1", "written", None),
    ("1709287260,u1,A2", "written", None),
    ("1709287300,,A3", "rejected", "missing_user"),
    ("", "skipped", "blank_line"),
    ("soon,u2,A1", "rejected", "bad_timestamp"),
    ("1709287320,u2,A1", "written", None),
]
CLICKS_MAPPING = {"timestamp": "ts", "user_id": "visitor", "product_id": "sku"}


def write_clicks(tmp_path: Path) -> Path:
    path = tmp_path / "clicks.csv"
    path.write_text("\n".join(row for row, _, _ in CLICKS_ROWS) + "\n")
    return path


def test_csv_constant_event_type_for_a_file_without_a_type_column(tmp_path):
    path = write_clicks(tmp_path)
    result = importers.import_csv(path, CLICKS_MAPPING, event_type="product_view")
    events, rejects, report = run(result)

    assert report.reconciles() and report.rows_read == len(CLICKS_ROWS)
    assert report.skipped == {"header": 1, "blank_line": 1}
    expected = collections.Counter(
        reason for _, outcome, reason in CLICKS_ROWS if outcome == "rejected"
    )
    assert report.rejected == dict(expected)
    assert [reject["line"] for reject in rejects] == [4, 6]
    assert report.written == len(events) == 3
    assert [(e["event_type"], e["user_id"], e["product_id"]) for e in events] == [
        ("product_view", "u1", "A1"),
        ("product_view", "u1", "A2"),
        ("product_view", "u2", "A1"),
    ]
    assert report.notes == []


def test_csv_constant_event_type_is_read_like_a_cell(tmp_path):
    path = write_clicks(tmp_path)
    # Stripped and renamed by the event type map, as a cell of a type column is.
    renamed = importers.import_csv(
        path, CLICKS_MAPPING, event_type_map={"click": "product_view"}, event_type=" click "
    )
    events, _, report = run(renamed)
    assert {e["event_type"] for e in events} == {"product_view"} and report.notes == []
    # An unknown type is a valid event type: kept, with a note in case it is a typo.
    events, _, report = run(importers.import_csv(path, CLICKS_MAPPING, event_type="tap"))
    assert report.written == 3 and {e["event_type"] for e in events} == {"tap"}
    assert report.notes == [
        "every event has type 'tap', which is not a known type: kept, but it updates fewer things"
    ]


@pytest.mark.parametrize(
    ("mapping", "event_type", "message", "options"),
    [
        (
            {**CLICKS_MAPPING, "event_type": "sku"},
            "product_view",
            "both mapped to column 'sku' and given as the constant 'product_view'",
            ("mapping", "event_type"),
        ),
        (CLICKS_MAPPING, "  ", "constant event type '  ' is empty", ("event_type",)),
        (
            CLICKS_MAPPING,
            "x" * (MAX_STRING_CHARS + 1),
            f"has {MAX_STRING_CHARS + 1} characters",
            ("event_type",),
        ),
        (CLICKS_MAPPING, 7, "must be a string, got int", ("event_type",)),
    ],
)
def test_csv_constant_event_type_errors(tmp_path, mapping, event_type, message, options):
    path = write_clicks(tmp_path)
    with pytest.raises(ImportConfigError, match=message) as raised:
        importers.import_csv(path, mapping, event_type=event_type)
    assert raised.value.options == options


# ---------------------------------------------------------------- Diginetica


def read_semicolon(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as source:
        return list(csv.reader(source, delimiter=";"))[1:]


@pytest.fixture(scope="module")
def diginetica():
    """The whole Diginetica import (about a second) and the files read plainly."""
    events, rejects, report = run(importers.import_diginetica(DIGINETICA))
    views = read_semicolon(DIGINETICA / "sample_train-item-views.csv")
    purchases = read_semicolon(DIGINETICA / "train-purchases.csv")
    categories = dict(read_semicolon(DIGINETICA / "product-categories.csv"))
    return events, rejects, report, views, purchases, categories


@needs_datasets
def test_diginetica_joins_purchases_and_categories(diginetica):
    events, rejects, report, views, purchases, categories = diginetica
    sessions = {row[0] for row in views}
    joined = [row for row in purchases if row[0] in sessions]

    assert not rejects and report.reconciles()
    assert report.rows_read == len(views) + len(purchases) + 2
    assert report.skipped == {"header": 2, "session_not_in_views": len(purchases) - len(joined)}
    assert report.info["sessions"] == len(sessions) == 2986
    assert report.info["sessions_with_purchases"] == len({row[0] for row in joined}) == 138
    by_type = collections.Counter(event["event_type"] for event in events)
    assert by_type == {"product_view": len(views), "purchase": len(joined)}
    assert len(joined) == 256

    viewed, bought = events[: len(views)], events[len(views) :]
    assert [(e["session_id"], e["product_id"]) for e in viewed] == [(r[0], r[2]) for r in views]
    assert [(e["session_id"], e["product_id"]) for e in bought] == [(r[0], r[5]) for r in joined]
    assert [e["properties"] for e in bought] == [{"order_number": r[4]} for r in joined]
    assert all(event["category"] == categories[event["product_id"]] for event in events)


@needs_datasets
def test_diginetica_times_keep_dates_and_session_offsets(diginetica):
    events, _, _, views, purchases, _ = diginetica
    sessions = {row[0] for row in views}
    source = [(r[0], int(r[3]), r[4]) for r in views]
    source += [(r[0], int(r[2]), r[3]) for r in purchases if r[0] in sessions]
    starts = collections.defaultdict(set)
    for event, (session, timeframe, eventdate) in zip(events, source, strict=True):
        moment = datetime.fromtimestamp(event["timestamp"] / 1000, UTC)
        assert moment.date().isoformat() == eventdate
        starts[session].add(event["timestamp"] - timeframe)
    # One start per session: gaps between a session's events are exactly its timeframes.
    assert all(len(start) == 1 for start in starts.values())


@needs_datasets
def test_diginetica_users_from_row_or_session(diginetica):
    events, _, report, views, purchases, _ = diginetica
    # Session 150 browses anonymously and buys as user 18278: one profile.
    session_150 = [event for event in events if event["session_id"] == "150"]
    assert {event["user_id"] for event in session_150} == {"18278"}
    assert all(event["anonymous_id"] is None for event in session_150)
    # Session 1 never signs in: an anonymous user keyed by the session id.
    assert {(e["user_id"], e["anonymous_id"]) for e in events if e["session_id"] == "1"} == {
        (None, "1")
    }
    # Sessions with two user ids keep each row's own id.
    users = collections.defaultdict(set)
    for row in views:
        if row[1] != "NA":
            users[row[0]].add(row[1])
    sessions = {row[0] for row in views}
    for row in purchases:
        if row[0] in sessions and row[1] != "NA":
            users[row[0]].add(row[1])
    several = {session for session, found in users.items() if len(found) > 1}
    assert report.info["sessions_with_several_users"] == len(several) == 6
    expected = {
        (row[0], row[2]): row[1] if row[1] != "NA" else None for row in views if row[0] in several
    }
    got = {(e["session_id"], e["product_id"]): e["user_id"] for e in events[: len(views)]}
    assert all(got[key] == user for key, user in expected.items())


@needs_datasets
def test_diginetica_limit_joins_only_sessions_read():
    # The first 643 views are sessions 1..160, which include three sessions that bought.
    events, _, report = run(importers.import_diginetica(DIGINETICA, limit=644))
    views = read_semicolon(DIGINETICA / "sample_train-item-views.csv")[:643]
    sessions = {row[0] for row in views}
    purchases = read_semicolon(DIGINETICA / "train-purchases.csv")
    bought = sum(1 for row in purchases if row[0] in sessions)
    assert bought > 0 and report.reconciles()
    assert report.info["sessions"] == len(sessions)
    assert collections.Counter(e["event_type"] for e in events) == {
        "product_view": 643,
        "purchase": bought,
    }


def test_diginetica_products_give_prices_and_unknown_files_are_noted(tmp_path):
    (tmp_path / "views.csv").write_text(
        "sessionId;userId;itemId;timeframe;eventdate\n"
        "7;NA;100;0;2016-05-09\n7;NA;101;60000;2016-05-09\n8;NA;x;0;2016-05-09\n"
        "8;NA;100;soon;2016-05-09\n9;NA;100;5;09.05.2016\n9;NA;100;5\n"
    )
    (tmp_path / "purchases.csv").write_text(
        "sessionId;userId;timeframe;eventdate;ordernumber;itemId\n"
        "7;42;120000;2016-05-09;555;101\n99;NA;1;2016-05-09;556;100\n"
    )
    (tmp_path / "cats.csv").write_text("itemId;categoryId\n100;7\n101;8\n")
    (tmp_path / "products.csv").write_text(
        "itemId;pricelog2;product.name.tokens\n100;3;1,2\n101;10;3\n"
    )
    (tmp_path / "clicks.csv").write_text("sessionId;timeframe;userid;clickedProductId\n")
    events, rejects, report = run(importers.import_diginetica(tmp_path))

    assert report.reconciles() and report.written == 3
    assert [(e["event_type"], e["price"], e["category"]) for e in events] == [
        ("product_view", 8.0, "7"),
        ("product_view", 1024.0, "8"),
        ("purchase", 1024.0, "8"),
    ]
    assert {e["user_id"] for e in events} == {"42"}
    assert [e["timestamp"] - events[0]["timestamp"] for e in events] == [0, 60_000, 120_000]
    assert report.skipped == {"header": 2, "session_not_in_views": 1}
    assert report.rejected == {"wrong_type": 1, "bad_timestamp": 2, "wrong_column_count": 1}
    assert {r["line"]: r["detail"] for r in rejects}[4] == "column 'itemId' is not a whole number"
    assert any("clicks.csv" in note for note in report.notes)
    with pytest.raises(ImportConfigError, match="clicks.csv"):
        importers.import_diginetica([tmp_path / "views.csv", tmp_path / "clicks.csv"])
    with pytest.raises(ImportConfigError, match="no Diginetica views file"):
        importers.import_diginetica(tmp_path / "cats.csv")


# ---------------------------------------------------------------- OTTO


@needs_datasets
def test_otto_events_match_the_sessions():
    events, rejects, report = run(importers.import_otto(OTTO))
    with open(OTTO, encoding="utf-8") as source:
        sessions = [json.loads(line) for line in source]
    plain = [
        (str(s["session"]), e["aid"], e["ts"], e["type"]) for s in sessions for e in s["events"]
    ]
    types = {"clicks": "product_view", "carts": "add_to_cart", "orders": "purchase"}

    assert not rejects and report.reconciles() and report.written == len(plain) == 862
    got = [
        (e["anonymous_id"], int(e["product_id"]), e["timestamp"], e["event_type"]) for e in events
    ]
    assert got == [(s, aid, ts, types[kind]) for s, aid, ts, kind in plain]
    assert collections.Counter(e["event_type"] for e in events) == {
        "product_view": 800,
        "add_to_cart": 52,
        "purchase": 10,
    }
    assert all(e["session_id"] == e["anonymous_id"] and e["user_id"] is None for e in events)
    assert len({e["event_id"] for e in events}) == 862


def test_otto_bad_lines(tmp_path):
    path = tmp_path / "otto.jsonl"
    lines = [
        {"session": 1, "events": [{"aid": 5, "ts": 1659304800025, "type": "clicks"}]},
        {"session": 2, "events": [{"aid": 5, "ts": 1659304800, "type": "orders"}]},
        {"session": 3, "events": [{"aid": 5, "ts": 1, "type": "views"}, {"aid": "5", "ts": 1}]},
        {"session": 4, "events": [{"ts": 1659304800025, "type": "carts"}]},
        {"session": 5, "events": [{"aid": 5, "type": "carts"}, 7]},
        {"events": []},
        {"session": 6},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\n\n{not json\n"
    path.write_text(text)
    events, rejects, report = run(importers.import_otto(path))

    assert report.reconciles() and report.rows_read == 11
    assert [e["timestamp"] for e in events] == [1_659_304_800_025, 1_659_304_800_000]
    assert report.skipped == {"blank_line": 1}
    assert report.rejected == {
        "unknown_event_type": 2,
        "missing_field": 2,
        "bad_timestamp": 1,
        "wrong_type": 1,
        "missing_user": 1,
        "bad_json": 1,
    }
    assert [r["line"] for r in rejects] == [3, 3, 4, 5, 5, 6, 7, 9]


# ---------------------------------------------------------------- SR-GNN sessions

SRGNN = DATASETS / "diginetica_srgnn"


@needs_datasets
def test_srgnn_clicks_follow_the_files_with_a_click_a_second():
    import gzip

    events, rejects, report = run(
        importers.import_srgnn(
            SRGNN / "train_sessions.txt.gz", SRGNN / "test_sessions.txt.gz", limit=5_000
        )
    )
    with gzip.open(SRGNN / "train_sessions.txt.gz", "rt") as source:
        plain = [(f"train-{n}", item) for n, line in enumerate(source, 1) for item in line.split()]
    assert not rejects and report.reconciles() and report.written == 5_000
    assert [(e["anonymous_id"], e["product_id"]) for e in events] == plain[:5_000]
    origin = datetime(2016, 1, 1, tzinfo=UTC).timestamp() * 1000
    assert [e["timestamp"] for e in events] == [origin + 1000 * n for n in range(5_000)]
    assert all(e["properties"] == {"split": "train"} for e in events)
    assert all(e["session_id"] == e["anonymous_id"] and e["user_id"] is None for e in events)
    assert len({e["event_id"] for e in events}) == 5_000


def test_srgnn_marks_the_test_period_and_reads_plain_or_gzip(tmp_path):
    import gzip

    train = tmp_path / "train.txt.gz"
    with gzip.open(train, "wt") as out:
        out.write("1 2 3\n\n4 x5 4\n")
    test = tmp_path / "test.txt"
    test.write_text("2 3\n")
    events, rejects, report = run(importers.import_srgnn(train, test))

    assert report.reconciles() and report.rows_read == 9
    assert report.skipped == {"blank_line": 1} and report.rejected == {"wrong_type": 1}
    assert rejects[0]["line"] == 3 and "x5" in rejects[0]["detail"]
    got = [(e["session_id"], e["product_id"], e["properties"]["split"]) for e in events]
    assert got == [
        ("train-1", "1", "train"),
        ("train-1", "2", "train"),
        ("train-1", "3", "train"),
        ("train-3", "4", "train"),
        ("train-3", "4", "train"),
        ("test-1", "2", "test"),
        ("test-1", "3", "test"),
    ]
    seconds = [(e["timestamp"] - importers.SRGNN_ORIGIN_MS) // 1000 for e in events]
    assert seconds == [0, 1, 2, 3, 5, 6, 7]  # the rejected click keeps its second
    # A repeated item in one session is a second click, with an id of its own.
    assert len({e["event_id"] for e in events}) == 7


def test_srgnn_needs_two_distinct_readable_files(tmp_path, capsys):
    test = tmp_path / "test.txt"
    test.write_text("1 2\n")
    with pytest.raises(ImportConfigError, match="same file"):
        importers.import_srgnn(test, test)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(b"\x1f\x8b not really")
    with pytest.raises(ImportConfigError, match="gzip"):
        run(importers.import_srgnn(broken, test))
    out = tmp_path / "out.avro"
    assert cli_main()(["import", "srgnn", str(test), "--out", str(out)]) == 2
    assert "TRAIN then the TEST" in capsys.readouterr().err


# ---------------------------------------------------------------- writing and the CLI


def test_write_events_replaces_stale_rejects(tmp_path):
    out = tmp_path / "events.avro"
    stale = tmp_path / "events.rejects.jsonl"
    stale.write_text('{"old": true}\n')
    event = {name: None for name in FIELD_NAMES}
    event.update(event_id="e1", user_id="u", event_type="click", timestamp=1_511_544_070_000)
    assert importers.write_events([event], out) == (1, 0)
    assert stale.read_text() == ""
    assert [r["event_id"] for r in read_container(out)] == ["e1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.avro", "events.rejects.jsonl"]


def cli_main():
    """``runners.cli.main``, or the import subcommand alone if the full CLI does not import."""
    try:
        from runners.cli import main
    except ImportError:
        top = argparse.ArgumentParser(prog="microtarget")
        import_cmd.register(top.add_subparsers(dest="command", required=True))

        def main(argv):
            args = top.parse_args(argv)
            return args.func(args)

    return main


@needs_datasets
def test_cli_imports_taobao(tmp_path, capsys):
    out = tmp_path / "cli" / "taobao.avro"
    code = cli_main()(["import", "taobao", str(TAOBAO), "--out", str(out), "--limit", "300"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "rows read   300" in printed and "written     299" in printed
    assert "skipped     1 (header 1)" in printed
    assert f"rejects: {tmp_path / 'cli' / 'taobao.rejects.jsonl'}" in printed
    assert len(list(read_container(out))) == 299


def test_cli_csv_with_map_and_errors(tmp_path, capsys):
    path = tmp_path / "shop.csv"
    path.write_text("when;who;what;cost\n1511544070;u1;v;1.5\n1511544070;u1;v;x\n")
    out = tmp_path / "shop.avro"
    main = cli_main()
    argv = ["import", "csv", str(path), "--out", str(out), "--delimiter", ";"]
    maps = ["--map", "timestamp=when,user_id=who", "--map", "event_type=what,price=cost"]
    assert main(argv + maps + ["--event-type-map", "v=product_view"]) == 0
    printed = capsys.readouterr().out
    assert "rejected    1 (wrong_type 1)" in printed
    assert [r["event_type"] for r in read_container(out)] == ["product_view"]
    reject = json.loads((tmp_path / "shop.rejects.jsonl").read_text())
    assert reject["line"] == 3 and "'price'" in reject["detail"]

    assert main(argv + ["--map", "timestamp=when,colour=who"]) == 2
    assert "error: mapping names unknown event field 'colour'" in capsys.readouterr().err
    assert main(argv + ["--map", "timestamp=when,user_id=nobody,event_type=what"]) == 2
    assert "column 'nobody'" in capsys.readouterr().err
    assert main(["import", "otto", str(path), "--out", str(out), "--map", "a=b"]) == 2
    assert "error: --map applies to the csv format only" in capsys.readouterr().err


def test_cli_csv_with_a_constant_event_type(tmp_path, capsys):
    path = write_clicks(tmp_path)
    out = tmp_path / "clicks.avro"
    main = cli_main()
    argv = ["import", "csv", str(path), "--out", str(out), "--map", "timestamp=ts,user_id=visitor"]
    assert main(argv + ["--event-type", "product_view"]) == 0
    printed = capsys.readouterr().out
    assert f"rows read   {len(CLICKS_ROWS)}" in printed and "written     3" in printed
    assert "rejected    2 (bad_timestamp 1, missing_user 1)" in printed
    assert "skipped     2 (blank_line 1, header 1)" in printed
    assert [r["event_type"] for r in read_container(out)] == ["product_view"] * 3

    both = argv + ["--map", "event_type=sku", "--event-type", "product_view"]
    assert main(both) == 2
    err = capsys.readouterr().err
    assert "event field 'event_type' is both mapped to column 'sku'" in err
    assert err.rstrip().endswith("(--map, --event-type)")
    assert main(argv) == 2
    assert "no constant event type is given (--map, --event-type)" in capsys.readouterr().err
    assert main(argv + ["--event-type", ""]) == 2
    assert "error: constant event type '' is empty (--event-type)" in capsys.readouterr().err
    otto = ["import", "otto", str(path), "--out", str(out), "--event-type", "product_view"]
    assert main(otto) == 2
    assert "error: --event-type applies to the csv format only" in capsys.readouterr().err
