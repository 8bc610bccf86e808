"""The ``microtarget`` command and ``python -m pipelines.personalize`` on a generated file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runners import cli, local_redis
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "events.avro"
    assert (
        cli.main(
            ["generate", "--events", "3000", "--users", "60", "--seed", "5", "--out", str(out)]
        )
        == 0
    )
    return out


def test_replay_writes_profiles_and_a_summary_that_reconciles(
    generated, tmp_path, redis_url, namespace, capsys
):
    summary_path = tmp_path / "summary.json"
    code = cli.main(
        [
            "replay",
            str(generated),
            "--redis",
            redis_url,
            "--namespace",
            namespace,
            "--dead-letters",
            str(tmp_path / "dead"),
            "--summary-json",
            str(summary_path),
            "--quiet",
        ]
    )
    assert code == 0
    summary = json.loads(summary_path.read_text())
    truth = json.loads(generated.with_suffix(".personas.json").read_text())
    assert summary["events_read"] == 3000
    assert summary["duplicates"] == truth["duplicates"] > 0
    assert summary["profiles"] == 60
    assert summary["invalid"] == 0
    printed = capsys.readouterr().out
    assert "events_read" in printed and namespace in printed

    user = sorted(truth["personas"])[0]
    assert cli.main(["profile", user, "--redis", redis_url, "--namespace", namespace]) == 0
    profile = json.loads(capsys.readouterr().out)
    assert profile["user_id"] == user and profile["events"] > 0
    assert cli.main(["profile", "nobody", "--redis", redis_url, "--namespace", namespace]) == 1


def test_bad_config_fails_at_start_naming_the_field(generated, tmp_path, redis_url, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("sessions:\n  gap: soon\n")
    code = cli.main(["replay", str(generated), "--redis", redis_url, "--config", str(config)])
    assert code == 2
    assert "sessions.gap" in capsys.readouterr().err


def test_missing_input_fails_at_start(tmp_path, redis_url, capsys):
    code = cli.main(["replay", str(tmp_path / "nothing*.avro"), "--redis", redis_url])
    assert code == 2
    assert "no file matches" in capsys.readouterr().err


def test_python_m_personalize_runs_with_beam_flags(generated, tmp_path, redis_url, namespace):
    summary = tmp_path / "s.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.personalize",
            f"--input={generated}",
            f"--redis={redis_url}",
            f"--namespace={namespace}",
            f"--dead_letters={tmp_path / 'dead'}",
            f"--summary_json={summary}",
            "--runner=FnApiRunner",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(summary.read_text())["events_read"] == 3000


def test_embedded_redis_starts_once_and_stops_by_pid(tmp_path):
    url = local_redis.ensure_embedded(tmp_path)
    assert local_redis.ensure_embedded(tmp_path) == url
    pid = int((tmp_path / "redis.pid").read_text())
    assert local_redis.stop_embedded(tmp_path) is True
    assert not local_redis._alive(pid) or _zombie(pid)
    assert local_redis.stop_embedded(tmp_path) is False


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] == "Z"
    except OSError:
        return True


def test_unreachable_redis_fails_at_start(generated, capsys):
    code = cli.main(["replay", str(generated), "--redis", "redis://user:pw@127.0.0.1:1/0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot reach Redis" in err and "pw" not in err
