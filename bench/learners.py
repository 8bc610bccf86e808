"""One learner alone: updates per second of each online model, and the pipeline with and without.

    python bench/learners.py FILE [--json OUT] [--repeat N]

FILE is an Avro event file or the Taobao UserBehavior CSV (imported first).

* ``learners``: the model inputs of the file (the examples and requests the
  timelines emit, collected once from a batch replay) fed to each model
  alone, in its order, in this process: examples learned per second and
  requests scored per second. One learner is one key, so this is the bound
  on a model's throughput whatever the parallelism.
* ``pipeline_models_off`` / ``pipeline_models_on``: the full batch replay
  with ``examples/config.yaml``, without and with the models (each in a
  child process, alternating, best of ``--repeat``), next to the bare-Beam
  baseline of ``bench/replay.py``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _config(models: bool):
    from pipelines.config import load_config

    config = load_config(ROOT / "examples" / "config.yaml")
    if not models:
        config = config.model_copy(
            update={"models": config.models.model_copy(update={"enabled": []})}
        )
    return config


def _inputs(path: str) -> dict[str, list]:
    """The model inputs a batch replay of the file emits, by model."""
    import apache_beam as beam

    from pipelines import personalize
    from pipelines.keys import KeySource
    from transforms.sources import ReadEvents

    collected: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "inputs"
        with beam.Pipeline(runner="FnApiRunner") as pipeline:
            raw = pipeline | ReadEvents([path])
            outputs = personalize.build(raw, _config(True), KeySource("dev"))
            timeline_inputs = outputs["model_inputs"]
            _ = (
                timeline_inputs
                | beam.Map(json.dumps)
                | beam.io.WriteToText(str(out), file_name_suffix=".jsonl")
            )
        for part in Path(tmp).glob("inputs*.jsonl"):
            for line in part.read_text().splitlines():
                item = json.loads(line)
                collected.setdefault(item["model"], []).append(item)
    return collected


def _learners(path: str) -> dict:
    from models import learning

    specs = _config(True).model_specs()
    found = {}
    for name, items in sorted(_inputs(path).items()):
        model = learning.new_model(specs[name])
        examples = sum(1 for item in items if item["kind"] == "example")
        started = time.perf_counter()
        learning.feed(model, items)
        wall = time.perf_counter() - started
        found[name] = {
            "examples": examples,
            "requests": len(items) - examples,
            "wall_seconds": round(wall, 3),
            "items_per_s": round(len(items) / wall, 1),
        }
    return found


def _pipeline(path: str, models: bool) -> dict:
    from pipelines.keys import KeySource
    from runners.local.redis_server import RedisServer
    from runners.replay import ReplayRequest, run

    with tempfile.TemporaryDirectory() as tmp, RedisServer(data_dir=Path(tmp) / "redis") as server:
        request = ReplayRequest(
            inputs=[path],
            redis_url=server.url,
            namespace="bench",
            config=_config(models),
            dead_letters_dir=str(Path(tmp) / "dead-letters"),
            key_source=KeySource("dev"),
        )
        started = time.perf_counter()
        run(request)
        return {"wall_seconds": time.perf_counter() - started}


def _child(variant: str, path: str) -> None:
    if variant == "learners":
        print(json.dumps(_learners(path)))
    else:
        print(json.dumps(_pipeline(path, models=variant == "models_on")))


def _run_child(variant: str, path: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", variant, path],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("--json", default=None)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.file)
        return 0
    sys.path.insert(0, str(ROOT / "bench"))
    from replay import _count_events, _prepare

    with tempfile.TemporaryDirectory() as tmp:
        path = _prepare(args.file, Path(tmp))
        events = _count_events(path)
        learners = _run_child("learners", path)
        runs: dict[str, list] = {"models_off": [], "models_on": []}
        for _ in range(args.repeat):
            for variant in runs:
                runs[variant].append(_run_child(variant, path)["wall_seconds"])
                print(f"{variant}: {runs[variant][-1]:.2f} s", file=sys.stderr)
    best = {variant: min(walls) for variant, walls in runs.items()}
    result = {
        "file": args.file,
        "events": events,
        "learners": learners,
        "pipeline_models_off_events_per_s": round(events / best["models_off"], 1),
        "pipeline_models_on_events_per_s": round(events / best["models_on"], 1),
        "models_share": round(1 - best["models_off"] / best["models_on"], 3),
        "runs": runs,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
