"""The recommenders of ``models.recommend`` on the session benchmark, as the literature scores it.

    python bench/recommenders.py [--data ../shared/datasets/diginetica_srgnn]
                                 [--only pop,spop,iknn,vsknn,...] [--limit-test N] [--json OUT]

Protocol (the one ``../shared/datasets/diginetica_srgnn/SOURCE.md`` states):
every model learns the training sessions click by click in file order, then
the test sessions the same way; after each click of a test session but its
last, the model ranks 20 items for the session's clicks so far and the next
click is looked up in them. HR@20 is the share of next clicks in the list,
MRR@20 the mean of 1/rank (0 beyond 20), both in %. The models are the pure
ones; what the pipeline serves is measured by ``microtarget evaluate``.

Printed per variant: HR@20, MRR@20, the reference figures of SOURCE.md, the
seconds spent learning and ranking, clicks per second, and what the model
holds at the end (``size()``) with its pickled bytes, and (``growth``) what
it held after each quarter of the training sessions, next to the items seen:
how memory grows as items do.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models import recommend  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets" / "diginetica_srgnn"
K = 20

REFERENCE = {  # SOURCE.md, in %
    "pop": (0.93, 0.21),
    "spop": (21.08, 13.69),
    "iknn": (40.38, 13.09),  # Item-KNN learned online, lambda = 20
    "vsknn": (51.00, 18.02),
}

DAY = 86_400_000


class Sharded:
    """N copies of a model, each learning and ranking the sessions hashed to it.

    What ``models.shards: N`` does in the pipeline (users hashed over copies;
    here each benchmark session is its own user): the work spreads over N
    keys, and each copy knows only its share of the sessions.
    """

    def __init__(self, shards: int, make):
        self.models = [make() for _ in range(shards)]

    def _of(self, session):
        return self.models[zlib.crc32(repr(session).encode()) % len(self.models)]

    def learn(self, session, item, at=0):
        self._of(session).learn(session, item, at)

    def recommend(self, items, k=20, exclude=None):
        return self._of(exclude).recommend(items, k, exclude=exclude)

    def size(self) -> dict:
        sizes = [model.size() for model in self.models]
        return {name: sum(size[name] for size in sizes) for name in sizes[0]}


class Replicated:
    """N copies of a model, each learning every session and ranking those hashed to it.

    What ``models.shards: N`` with ``recommendations.replicated`` does: the
    lists are one model's, learning is paid N times, and the ranking spreads
    over the copies (``rank_s_by_copy``).
    """

    def __init__(self, shards: int, make):
        self.models = [make() for _ in range(shards)]
        self.rank_s_by_copy = [0.0] * shards

    def learn(self, session, item, at=0):
        for model in self.models:
            model.learn(session, item, at)

    def recommend(self, items, k=20, exclude=None):
        copy = zlib.crc32(repr(exclude).encode()) % len(self.models)
        started = time.perf_counter()
        ranked = self.models[copy].recommend(items, k, exclude=exclude)
        self.rank_s_by_copy[copy] += time.perf_counter() - started
        return ranked

    def size(self) -> dict:
        sizes = [model.size() for model in self.models]
        return {name: sum(size[name] for size in sizes) for name in sizes[0]}


class Reminded:
    """A model's list blended with the session's own items, as ``reminders: W`` serves it."""

    def __init__(self, weight: float, model):
        self.weight = weight
        self.model = model

    def learn(self, session, item, at=0):
        self.model.learn(session, item, at)

    def recommend(self, items, k=20, exclude=None):
        ranked = self.model.recommend(items, k, exclude=exclude)
        own = recommend.session_items(items, k)
        return self.model.popular.fill(recommend._mix(ranked, own, self.weight, k), k)

    def size(self) -> dict:
        return self.model.size()


VARIANTS = {
    "pop": lambda: recommend.Popular(),
    "spop": lambda: recommend.SessionPopular(),
    "iknn": lambda: recommend.ItemKNN(smoothing=20, neighbours=200),
    "iknn_n50": lambda: recommend.ItemKNN(smoothing=20, neighbours=50),
    "iknn_decay": lambda: recommend.ItemKNN(smoothing=20, neighbours=200, half_life_ms=7 * DAY),
    "iknn_unpruned": lambda: recommend.ItemKNN(smoothing=20, neighbours=10**9),
    "sknn": lambda: recommend.SessionKNN(neighbours=100, sample=1000, recent_weighted=False),
    "vsknn": lambda: recommend.SessionKNN(neighbours=100, sample=250),
    "vsknn_s500": lambda: recommend.SessionKNN(neighbours=100, sample=500),
    "vsknn_s1000": lambda: recommend.SessionKNN(neighbours=100, sample=1000),
    "vsknn_reminders25": lambda: Reminded(0.25, recommend.SessionKNN()),
    "vsknn_reminders50": lambda: Reminded(0.5, recommend.SessionKNN()),
    "vsknn_reminders75": lambda: Reminded(0.75, recommend.SessionKNN()),
    "vsknn_shards2": lambda: Sharded(2, recommend.SessionKNN),
    "vsknn_shards4": lambda: Sharded(4, recommend.SessionKNN),
    "vsknn_replicated2": lambda: Replicated(2, recommend.SessionKNN),
    "vsknn_10k": lambda: recommend.SessionKNN(neighbours=100, sample=250, max_sessions=10_000),
}
CLICK_MS = 1_000  # the synthetic time rule of `microtarget import srgnn`: a click a second


def read_sessions(path: Path) -> list[list[int]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as lines:
        return [[int(x) for x in line.split()] for line in lines if line.strip()]


def run(name: str, train, test, limit_test: int | None) -> dict:
    model = VARIANTS[name]()
    hits = 0
    reciprocal = 0.0
    predictions = 0
    clock = 0
    learn_s = rank_s = 0.0
    learn = model.learn
    quarters = {len(train) * q // 4 for q in (1, 2, 3)}
    growth, seen, clicks_so_far = [], set(), 0
    started = time.perf_counter()
    for number, items in enumerate(train):
        if number in quarters:
            learn_s += time.perf_counter() - started
            growth.append(_held(model, seen, clicks_so_far))
            started = time.perf_counter()
        for item in items:
            learn(("train", number), item, clock)
            clock += CLICK_MS
        seen.update(items)
        clicks_so_far += len(items)
    learn_s += time.perf_counter() - started
    growth.append(_held(model, seen, clicks_so_far))
    for number, items in enumerate(test[:limit_test]):
        session = ("test", number)
        for position, item in enumerate(items[:-1]):
            t0 = time.perf_counter()
            learn(session, item, clock)
            clock += CLICK_MS
            t1 = time.perf_counter()
            prefix = items[: position + 1]
            if isinstance(model, (recommend.SessionKNN, Sharded, Replicated, Reminded)):
                ranked = model.recommend(prefix, K, exclude=session)
            else:
                ranked = model.recommend(prefix, K)
            rank_s += time.perf_counter() - t1
            learn_s += t1 - t0
            target = items[position + 1]
            for rank, entry in enumerate(ranked, 1):
                if entry[0] == target:
                    hits += 1
                    reciprocal += 1.0 / rank
                    break
            predictions += 1
        learn(session, items[-1], clock)
        clock += CLICK_MS
    clicks = sum(map(len, train)) + sum(map(len, test[:limit_test]))
    return {
        "variant": name,
        "hr_at_20": round(100 * hits / predictions, 2),
        "mrr_at_20": round(100 * reciprocal / predictions, 2),
        "predictions": predictions,
        "reference": REFERENCE.get(name),
        "learn_s": round(learn_s, 1),
        "rank_s": round(rank_s, 1),
        "clicks_per_s": round(clicks / (learn_s + rank_s)),
        "size": model.size(),
        **(
            {"rank_s_by_copy": [round(s, 1) for s in model.rank_s_by_copy]}
            if isinstance(model, Replicated)
            else {}
        ),
        "pickled_mb": round(len(pickle.dumps(model, pickle.HIGHEST_PROTOCOL)) / 1e6, 1),
        "growth": growth,
    }


def _held(model, seen: set, clicks: int) -> dict:
    """What the model holds after ``clicks`` training clicks of ``len(seen)`` items."""
    pickled = len(pickle.dumps(model, pickle.HIGHEST_PROTOCOL))
    return {"clicks": clicks, "items": len(seen), "size": model.size(), "pickled_mb": pickled / 1e6}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--train", type=Path, default=None, help="default: DATA/train_sessions.txt.gz"
    )
    parser.add_argument(
        "--test", type=Path, default=None, help="default: DATA/test_sessions.txt.gz"
    )
    parser.add_argument("--only", default="pop,spop,iknn,vsknn")
    parser.add_argument("--limit-test", type=int, default=None, help="test sessions to score")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    names = args.only.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"--only: unknown variant {', '.join(unknown)} (of {', '.join(VARIANTS)})")
    train = read_sessions(args.train or args.data / "train_sessions.txt.gz")
    test = read_sessions(args.test or args.data / "test_sessions.txt.gz")
    rows = []
    for name in names:
        row = run(name, train, test, args.limit_test)
        rows.append(row)
        ref = row["reference"]
        print(
            f"{name:12s} HR@20 {row['hr_at_20']:6.2f}  MRR@20 {row['mrr_at_20']:6.2f}"
            + (f"  (reference {ref[0]:.2f} / {ref[1]:.2f})" if ref else "")
            + f"  {row['predictions']} predictions, learn {row['learn_s']} s,"
            f" rank {row['rank_s']} s, {row['clicks_per_s']} clicks/s,"
            f" {row['size']}, {row['pickled_mb']} MB pickled",
            flush=True,
        )
        for held in row["growth"]:
            print(
                f"{'':12s} after {held['clicks']:>7} training clicks of {held['items']:>6} items:"
                f" {held['pickled_mb']:6.1f} MB pickled, {held['size']}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
