"""Purchase intent as served: which optimizer and which session prefixes to learn.

    python bench/intent.py FILE [--json OUT]

One batch replay of FILE (``examples/config.yaml``, purchase_intent only)
records purchase intent's inputs: each closed session whole, its prefixes at
every k of ``RECORDED`` (a superset of any variant's) and the features of the
report's probes (a session's 1st, 3rd and 5th events). Then, in this process,
each variant feeds ``models.learning``'s classifier those inputs in the
learner's order, keeping only the prefixes it learns, and the probes' scores
are what it would have served. For each: the served ROC AUC at each probe on
the last 30% of sessions by start, as ``microtarget report`` computes it, and
two offline references (scikit-learn, trained on the first 70%): on whole
sessions only, and on whole sessions and the prefixes, both scored at the
same events of the same sessions.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECORDED = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 21)
VARIANTS = {  # name -> (optimizer, prefixes learned)
    "sgd_whole": ("sgd", ()),
    "sgd_prefixes_3": ("sgd", (3,)),
    "adagrad_whole": ("adagrad", ()),
    "adagrad_prefixes_3": ("adagrad", (3,)),
    "adagrad_prefixes_1_3": ("adagrad", (1, 3)),
    "adagrad_prefixes_1_3_5": ("adagrad", (1, 3, 5)),
    "adagrad_prefixes_1_3_8": ("adagrad", (1, 3, 8)),
    "adagrad_prefixes_1_2_3_5_8_13_21": ("adagrad", (1, 2, 3, 5, 8, 13, 21)),
    "adagrad_prefixes_all_recorded": ("adagrad", RECORDED),
}


def _record(path: str, out: str) -> None:
    from pipelines.config import load_config
    from pipelines.keys import KeySource
    from runners.local.redis_server import RedisServer
    from runners.replay import ReplayRequest, run

    config = load_config(ROOT / "examples" / "config.yaml")
    models = config.models.model_copy(
        update={"enabled": ["purchase_intent"], "intent_prefixes": list(RECORDED)}
    )
    config = config.model_copy(update={"models": models})
    with tempfile.TemporaryDirectory() as tmp, RedisServer(data_dir=Path(tmp) / "redis") as server:
        request = ReplayRequest(
            inputs=[path],
            redis_url=server.url,
            namespace="bench",
            config=config,
            dead_letters_dir=str(Path(tmp) / "dead-letters"),
            key_source=KeySource("dev"),
            record_dir=out,
        )
        run(request)


def _prefix_k(item: dict) -> int:
    return int(item["id"].rpartition("#")[2])


def _served(inputs: list[dict], outcome: dict, cut: int, optimizer: str, prefixes) -> dict:
    from models import learning
    from runners.report import sections, stats

    spec = learning.ModelSpec("purchase_intent", optimizer=optimizer)
    items = [
        item for item in inputs if item["kind"] != learning.PREFIX or _prefix_k(item) in prefixes
    ]
    model = learning.new_model(spec)
    scores, _ = learning.feed(model, items)
    found = {}
    for k in (1, 3, 5):
        mine = [
            (s["score"], outcome[session])
            for s in scores
            if "probe" in s
            and s["probe"].rpartition(":")[2] == str(k)
            and (session := s["probe"].rpartition(":")[0]) in outcome
            and sections._session_of(session)[1] >= cut
        ]
        value = stats.auc(*zip(*mine, strict=True)) if mine else None
        found[str(k)] = None if value is None else round(value, 3)
    found["drifts"] = model.version - 1
    found["learned"] = sum(1 for item in items if item["kind"] in learning.LEARNED)
    return found


def measure(path: str) -> dict:
    from runners import replay
    from runners.report import sections

    with tempfile.TemporaryDirectory() as records:
        _record(path, records)
        inputs = replay.read_records(records, "intent_inputs")
    for item in inputs:
        item.setdefault("y", None)
    outcome = sections.outcomes(inputs)
    starts = sorted(sections._session_of(ident)[1] for ident in outcome)
    cut = starts[int(len(starts) * 0.7)]
    found = {"file": path, "sessions": len(outcome), "variants": {}, "references": {}}
    for name, (optimizer, prefixes) in VARIANTS.items():
        found["variants"][name] = _served(inputs, outcome, cut, optimizer, prefixes)
        print(name, found["variants"][name], flush=True)
    for name, kinds in (("offline_whole", ("example",)), ("offline_with_prefixes_3", None)):
        kept = [
            item
            for item in inputs
            if item["kind"] == "probe"
            or (kinds is None and item["kind"] == "prefix" and _prefix_k(item) == 3)
            or item["kind"] == "example"
        ]
        reference = sections._reference_by_event(kept, outcome, cut, [1, 3, 5])
        found["references"][name] = {k: v["auc"] for k, v in reference["by_event"].items()}
        print(name, found["references"][name], flush=True)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    found = measure(args.file)
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
