"""How much of each user's list to learn within the user's rule segment.

    python bench/segment_blend.py FILE... [--weights 0,0.25,0.5,1] [--algorithm A] [--json OUT]

For each weight, ``microtarget evaluate FILE`` with ``examples/config.yaml``
(its patterns and rule segments), only the ``recommendations`` model on,
``recommendations.segment_weight`` set to the weight and every user's clicks
scored (``evaluate_share: 1``): HR@20 and MRR@20 of the lists as served
before each click, next to POP and S-POP. Weight 0 is the global list alone.
Each weight runs in its own child process, into a Redis server of its own
started here and stopped by its PID. The metrics are deterministic (no timing),
so one run per weight is the answer.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _config(folder: Path, weight: float, algorithm: str) -> Path:
    shutil.copytree(ROOT / "examples", folder, dirs_exist_ok=True)
    path = folder / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["models"]["enabled"] = ["recommendations"]
    config["recommendations"].update(segment_weight=weight, evaluate_share=1.0, algorithm=algorithm)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run(files: list[str], weight: float, algorithm: str) -> dict:
    sys.path.insert(0, str(ROOT))
    from runners.local.redis_server import RedisServer

    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisServer(data_dir=Path(tmp) / "redis") as server,
    ):
        config = _config(Path(tmp) / "examples", weight, algorithm)
        out = Path(tmp) / "evaluation.json"
        command = [sys.executable, "-m", "runners.cli", "evaluate", *files, "--redis", server.url]
        command += ["--config", str(config), "--json", str(out), "--quiet", "--insecure-dev-key"]
        command += ["--dead-letters", str(Path(tmp) / "dead")]
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        found = json.loads(out.read_text())["recommendations"]
    return {"segment_weight": weight, **found}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--weights", default="0,0.25,0.5,1")
    parser.add_argument("--algorithm", default="session_knn")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    rows = []
    for weight in weights:
        row = run(args.files, weight, args.algorithm)
        rows.append(row)
        print(
            f"segment_weight {weight:<5} HR@20 {row['hr_at_20']:6.2f}  "
            f"MRR@20 {row['mrr_at_20']:6.2f}  ({row['predictions']} predictions)",
            flush=True,
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        result = {"files": args.files, "algorithm": args.algorithm, "weights": rows}
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
