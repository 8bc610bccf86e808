"""Which online clustering for ML segments: river's KMeans, DBSTREAM, CluStream, STREAMKMeans.

    python bench/clustering.py FILE [FILE...] [--json OUT]

Each FILE (Avro, or the Taobao CSV) is replayed once in batch to collect the
user vectors the ``clusters`` model learns from (one per closed session,
``models.features.user_features``, in event-time order), scaled online with
river's ``StandardScaler``. Every algorithm then learns them in that order,
and is judged by:

* ``silhouette``: river's progressive ``Silhouette`` (each vector scored
  against the centres before it is learned). River's online silhouette is the
  ratio of the distances to the assigned centre and to another centre, summed
  over the stream: lower is better (0 is perfect);
* ``stability``: the adjusted Rand index between the final assignments of
  all vectors by two runs that saw them in two different orders (the event
  order and a shuffle; 1 = the same grouping whatever the order);
* ``clusters``: how many clusters it ended with; ``us_per_update``.

KMeans and STREAMKMeans get ``k`` = 4 (``models.clusters``); DBSTREAM and
CluStream find their own number.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

K = 4


def _algorithms():
    from river import cluster

    return {
        "KMeans": lambda seed: cluster.KMeans(n_clusters=K, halflife=0.5, sigma=1.0, seed=seed),
        "STREAMKMeans": lambda seed: cluster.STREAMKMeans(
            chunk_size=50, n_clusters=K, halflife=0.5, sigma=1.0, seed=seed
        ),
        "CluStream": lambda seed: cluster.CluStream(
            n_macro_clusters=K, max_micro_clusters=50, time_gap=500, seed=seed
        ),
        "DBSTREAM": lambda seed: cluster.DBSTREAM(clustering_threshold=1.5, fading_factor=0.01),
    }


def _vectors(path: str) -> list[dict]:
    from learners import _inputs
    from river import preprocessing

    items = [i for i in _inputs(path).get("clusters", []) if i["kind"] == "example"]
    items.sort(key=lambda i: (i["at"], i["user_id"], i["id"]))
    scaler = preprocessing.StandardScaler()
    out = []
    for item in items:
        scaler.learn_one(item["x"])
        out.append(scaler.transform_one(item["x"]))
    return out


def _judge(make, vectors: list[dict]) -> dict:
    from river import metrics

    model = make(1)
    silhouette = metrics.Silhouette()
    started = time.perf_counter()
    unscored = 0  # vectors met before the algorithm had centres to score against
    for x in vectors:
        centres = getattr(model, "centers", None)
        if centres:
            silhouette.update(x, model.predict_one(x), centres)
        else:
            unscored += 1
        model.learn_one(x)
    wall = time.perf_counter() - started
    other = make(2)
    shuffled = list(vectors)
    random.Random(5).shuffle(shuffled)
    for x in shuffled:
        other.learn_one(x)
    agree = metrics.AdjustedRand()
    for x in vectors:
        agree.update(model.predict_one(x), other.predict_one(x))
    found = {model.predict_one(x) for x in vectors}
    return {
        "silhouette": round(float(silhouette.get()), 4),
        "stability": round(float(agree.get()), 4),
        "clusters": len(found),
        "unscored": unscored,
        "us_per_update": round(wall / max(len(vectors), 1) * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from replay import _prepare

    result = {}
    for source in args.files:
        with tempfile.TemporaryDirectory() as tmp:
            vectors = _vectors(_prepare(source, Path(tmp)))
        found = {name: _judge(make, vectors) for name, make in _algorithms().items()}
        result[source] = {"vectors": len(vectors), "algorithms": found}
        print(json.dumps({source: result[source]}, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
