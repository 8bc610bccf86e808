"""Diginetica, views joined to purchases: the purchase-intent model beats both baselines."""

from __future__ import annotations

import json

import pytest

from runners import cli
from tests.conftest import DATASETS, ROOT
from transforms.importers import import_diginetica, write_events

FOLDER = DATASETS / "diginetica_cikm2016"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not FOLDER.exists(), reason=f"Diginetica files not found at {FOLDER}"),
]


def test_purchase_intent_beats_the_baselines_progressively(tmp_path, redis_url, namespace, capsys):
    files = [FOLDER / name for name in ("sample_train-item-views.csv", "train-purchases.csv")]
    files.append(FOLDER / "product-categories.csv")
    events, _report = import_diginetica([str(f) for f in files])
    path = tmp_path / "diginetica.avro"
    write_events(events, path)
    out = tmp_path / "evaluation.json"
    code = cli.main(
        ["evaluate", str(path), "--redis", redis_url, "--namespace", namespace, "--quiet"]
        + ["--config", str(ROOT / "examples" / "config.yaml"), "--json", str(out)]
        + ["--dead-letters", str(tmp_path / "dead")]
    )
    assert code == 0
    found = json.loads(out.read_text())
    intent = found["models"]["purchase_intent"]
    majority = found["baselines"]["purchase_intent.majority"]
    views = found["baselines"]["purchase_intent.views"]
    print(capsys.readouterr().out)
    assert intent["samples"] > 2900  # every closed session, learned once
    assert intent["roc_auc"] > majority["roc_auc"] and intent["roc_auc"] > views["roc_auc"]
    # Better calibrated than the base rate; the views baseline's probability (the running
    # purchase rate at each view count) is better calibrated still on this data.
    assert intent["log_loss"] < majority["log_loss"]
